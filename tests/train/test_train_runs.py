"""Training runs on generated scenes: losses go down, promised files, stage chaining."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import runs
from tufl.runtime import checkpoint_files as ckpt
from tufl.train.engine import Trainer, train
from tufl.runtime.run_log import read_metrics


def _mean(values):
    return sum(values) / len(values)


def test_source_only_reduces_loss_and_writes_promised_files(source_only_run):
    losses = [r["loss"] for r in read_metrics(source_only_run, "train")]
    assert len(losses) == 20
    assert _mean(losses[-5:]) < 0.8 * _mean(losses[:5])
    for name in ("config.yaml", "run_info.json", "metrics.jsonl", "checkpoint_last.pt", "checkpoint_best.pt"):
        assert (source_only_run / name).is_file(), name
    info = json.loads((source_only_run / "run_info.json").read_text())
    assert info["batch_per_domain"] == 2 and info["num_classes"] == 19 and info["iterations"] == 20
    # the speed settings a run took, resolved: no prepared copy here, strong view on the CPU workers
    assert info["prepared_copies"] == {"source": None, "target": None}
    assert info["strong_view"] == "worker" and info["optimizer"] == "SGD, fused"
    resolved = yaml.safe_load((source_only_run / "config.yaml").read_text())
    assert resolved["model"]["input_convention"] == "imagenet_rgb"  # resolved from "auto"
    state = ckpt.load_checkpoint(source_only_run / "checkpoint_last.pt")
    assert state["iteration"] == 20 and state["data"]["source_batches"] == 20
    vals = read_metrics(source_only_run, "val")
    assert [v["iter"] for v in vals] == [10, 20]
    best = max(vals, key=lambda v: v["miou"])
    assert ckpt.load_checkpoint(source_only_run / "checkpoint_best.pt")["iteration"] == best["iter"]
    # no temporary files; the run folder's lock file stays (tufl.runtime.folder_lock)
    assert [p.name for p in source_only_run.iterdir() if p.name.startswith(".")] == [".tufl.lock"]


def test_stage1_from_source_only_reduces_loss_and_adapts_thresholds(scene_info, source_only_run, tmp_path):
    tree = runs.run_tree(scene_info, tmp_path / "s1", "stage1", iters=16,
                         model={"pretrained": str(source_only_run / "checkpoint_last.pt")})
    train(runs.config(tree))
    records = read_metrics(tmp_path / "s1", "train")
    unsup = [r["loss_unsup"] for r in records]
    assert _mean(unsup[-4:]) < _mean(unsup[:4])
    assert all(0.0 <= r["pass_fraction"] <= 1.0 for r in records)
    thresholds = torch.tensor([float(v) for v in records[-1]["thresholds"].values()])
    assert thresholds.shape == (19,) and not torch.all(thresholds == 0.8) and thresholds.max() <= 0.999
    state = ckpt.load_checkpoint(tmp_path / "s1" / "checkpoint_last.pt")
    # one threshold state per BiSeNet head, saved in the checkpoint
    keys = [k for k in state["losses"] if k.endswith("thresholds")]
    assert len(keys) == 3


def test_stage1_with_the_definition_backend_follows_the_fused_run(scene_info, source_only_run, tmp_path):
    """``loss.tufl.backend: torch`` (the definition, autograd) inside the trainer gives the fused run."""
    logged = {}
    for backend in ("fused", "torch"):
        tree = runs.run_tree(scene_info, tmp_path / backend, "stage1", iters=4,
                             model={"pretrained": str(source_only_run / "checkpoint_last.pt")},
                             loss={"tufl": {"backend": backend}}, train={"deterministic": True})
        train(runs.config(tree))
        logged[backend] = read_metrics(tmp_path / backend, "train")
    for fused, definition in zip(logged["fused"], logged["torch"]):
        assert definition["loss_unsup"] == pytest.approx(fused["loss_unsup"], rel=1e-3, abs=1e-6)
        assert definition["pass_fraction"] == pytest.approx(fused["pass_fraction"], abs=1e-3)
        for name, value in fused["thresholds"].items():
            assert definition["thresholds"][name] == pytest.approx(value, abs=1e-4)


def test_removed_loss_keys_are_refused_at_start(scene_info, tmp_path):
    from tufl.runtime.typed_config import ConfigError

    tree = runs.run_tree(scene_info, tmp_path / "g", "stage1", loss={"tufl": {"cuda_graphs": True}})
    with pytest.raises(ConfigError, match="loss.tufl.cuda_graphs: removed; `backend` chooses"):
        runs.config(tree)
    assert not (tmp_path / "g").exists()  # refused before anything is written


def test_existing_run_is_not_overwritten_without_resume(scene_info, tmp_path):
    tree = runs.run_tree(scene_info, tmp_path / "r", "source_only", iters=2)
    train(runs.config(tree))
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(runs.config(tree))


def test_nonfinite_losses_are_skipped_then_stop_the_run(scene_info, tmp_path, monkeypatch):
    from tufl.train import engine
    from tufl.objective.objective import Objective

    tree = runs.run_tree(scene_info, tmp_path / "nan", "source_only", iters=10,
                         train={"max_nonfinite": 3, "checkpoint_every": 100})
    original = Objective.forward
    calls = {"n": 0}

    def sometimes_nan(self, *args):
        out = original(self, *args)
        calls["n"] += 1
        if calls["n"] in (2, 4, 5, 6):  # one isolated, then three in a row
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Objective, "forward", sometimes_nan)
    trainer = Trainer(runs.config(tree))
    before = None
    with pytest.raises(engine.NonFiniteLossError, match="3 non-finite losses in a row"):
        for _ in range(10):
            if calls["n"] == 1:
                before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            result = trainer.train_step()
            trainer.iteration += 1
            trainer.nonfinite.check(trainer.cfg.train.max_nonfinite, trainer.iteration)  # run(): at each log line
            if calls["n"] == 2:
                assert not bool(result.finite)  # skipped: weights untouched
                after = trainer.model.state_dict()
                assert all(torch.equal(before[k], after[k]) for k in before)
    assert trainer.counters["nonfinite_skipped"] == 4


def test_batch_size_must_split_over_accumulation(scene_info, tmp_path):
    from tufl.runtime.typed_config import ConfigError

    tree = runs.run_tree(scene_info, tmp_path / "acc", "source_only", data={"batch_size": 3}, train={"accumulate": 2})
    with pytest.raises(ConfigError, match="not divisible by train.accumulate"):
        runs.config(tree)
    tree = runs.run_tree(scene_info, tmp_path / "acc", "source_only", iters=2, data={"batch_size": 2},
                         train={"accumulate": 2})
    trainer = Trainer(runs.config(tree))
    assert trainer.data.micro_batch == 1
    trainer.run()
    assert ckpt.load_checkpoint(tmp_path / "acc" / "checkpoint_last.pt")["data"]["source_batches"] == 4
