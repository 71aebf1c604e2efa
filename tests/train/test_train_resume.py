"""Exact resume after SIGKILL, and data-parallel training with two processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import runs
from tufl.runtime import checkpoint_files as ckpt

ITERS = 10


def _cli(*args: str, env: dict | None = None) -> list[str]:
    return [sys.executable, "-m", "tufl", *args]


def _final_state(run_dir: Path) -> dict:
    return ckpt.load_checkpoint(run_dir / "checkpoint_last.pt")


def _assert_same_training_state(a: dict, b: dict) -> None:
    assert a["iteration"] == b["iteration"] == ITERS
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["losses"]:
        assert torch.equal(a["losses"][key], b["losses"][key]), key
    assert a["data"] == b["data"]
    momentum_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    momentum_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(momentum_a, momentum_b))


def _kill_after_first_checkpoint(cmd: list[str], run_dir: Path) -> int:
    """Start ``cmd``, SIGKILL it once a mid-run checkpoint exists; returns its iteration."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if (run_dir / "checkpoint_last.pt").exists():
                proc.send_signal(signal.SIGKILL)
                break
            if proc.poll() is not None:
                pytest.fail(f"training ended before it could be killed: {proc.stderr.read()[-2000:]}")
            time.sleep(0.02)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    iteration = _final_state(run_dir)["iteration"]
    assert 0 < iteration < ITERS
    return iteration


@pytest.mark.parametrize("mode,variant", [("stage1", None), ("stage2", None), ("stage2", "authors")])
def test_resume_after_sigkill_ends_with_identical_weights(mode, variant, scene_info, source_only_run, tmp_path):
    extra = {"model": {"pretrained": str(source_only_run / "checkpoint_last.pt")},
             "train": {"deterministic": True, "checkpoint_every": 2}}
    if mode == "stage2":
        extra["mix"] = {"p_longtail": 0.5, "class_relations": True}
    if variant == "authors":  # their BatchNorm mode and optimiser groups, dual_soft with fetched instances
        extra["model"].update(freeze_bn="all", frozen_bn_affine_trainable=True)
        extra["optim"] = {"decay_norm_and_bias": False}
        extra["mix"] = {"mode": "dual_soft"}
    straight = runs.write_yaml(runs.run_tree(scene_info, tmp_path / "straight", mode, ITERS, **extra),
                               tmp_path / "straight.yaml")
    killed = runs.write_yaml(runs.run_tree(scene_info, tmp_path / "killed", mode, ITERS, **extra),
                             tmp_path / "killed.yaml")
    subprocess.run(_cli("train", "--config", str(straight)), check=True, capture_output=True)
    _kill_after_first_checkpoint(_cli("train", "--config", str(killed)), tmp_path / "killed")
    done = subprocess.run(_cli("train", "--config", str(killed), "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_training_state(_final_state(tmp_path / "straight"), _final_state(tmp_path / "killed"))
    # the metrics log holds one history: no iteration twice
    iters = [json.loads(line)["iter"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert iters == list(range(1, ITERS + 1))


DDP_SCRIPT = """
import json, sys
import torch, torch.distributed as dist
sys.path.insert(0, sys.argv[2])
import runs
from tufl.train.engine import Trainer
tree = json.loads(open(sys.argv[1]).read())
trainer = Trainer(runs.config(tree))
trainer.run()
params = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
thresholds = torch.stack([l.thresholds for l in trainer.objective.consistency.losses])
gathered = [None, None]
dist.all_gather_object(gathered, {"params": params, "thresholds": thresholds,
                                  "source": trainer.source_loader.batches_consumed})
if dist.get_rank() == 0:
    a, b = gathered
    out = {"params_equal": torch.equal(a["params"], b["params"]),
           "thresholds_equal": torch.equal(a["thresholds"], b["thresholds"]),
           "thresholds_moved": bool((a["thresholds"] != 0.8).any()),
           "batches": [a["source"], b["source"]]}
    open(sys.argv[3], "w").write(json.dumps(out))
dist.destroy_process_group()
"""


def test_two_process_gloo_training_keeps_ranks_identical(scene_info, source_only_run, tmp_path):
    tree = runs.run_tree(scene_info, tmp_path / "ddp", "stage1", 4,
                         model={"pretrained": str(source_only_run / "checkpoint_last.pt")},
                         train={"val_every": 2})
    (tmp_path / "tree.json").write_text(json.dumps(tree))
    (tmp_path / "ddp_run.py").write_text(DDP_SCRIPT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*torchrun, str(tmp_path / "ddp_run.py"), str(tmp_path / "tree.json"),
         str(Path(__file__).parents[1]), str(tmp_path / "out.json")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out == {"params_equal": True, "thresholds_equal": True, "thresholds_moved": True, "batches": [4, 4]}
    # rank 0 alone writes: one record per logged iteration
    train_records = [r for r in map(json.loads, (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines())
                     if r["kind"] == "train"]
    assert [r["iter"] for r in train_records] == [1, 2, 3, 4]
    info = json.loads((tmp_path / "ddp" / "run_info.json").read_text())
    assert info["world_size"] == 2 and info["batch_per_domain_per_gpu_step"] == 1


def test_torchrun_launches_the_cli(scene_info, tmp_path):
    tree = runs.run_tree(scene_info, tmp_path / "cli", "source_only", 2)
    path = runs.write_yaml(tree, tmp_path / "cfg.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "tufl", "train", "--config", str(path)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    state = ckpt.load_checkpoint(tmp_path / "cli" / "checkpoint_last.pt")
    assert state["data"]["world_size"] == 2 and len(state["rng"]) == 2
