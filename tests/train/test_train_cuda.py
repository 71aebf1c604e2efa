"""Training on a GPU: mixed precision, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

import runs
from tufl.runtime import checkpoint_files as ckpt
from tufl.train.engine import train
from tufl.runtime.run_log import read_metrics

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


@pytest.mark.parametrize("amp_dtype", ["bfloat16", "float16"])
def test_stage1_and_stage2_train_on_cuda_with_mixed_precision(amp_dtype, scene_info, source_only_run, tmp_path,
                                                              monkeypatch):
    if amp_dtype == "float16":  # the fp16 + loss-scaling path, also on GPUs that have bf16
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    pretrained = {"pretrained": str(source_only_run / "checkpoint_last.pt")}
    for mode in ("stage1", "stage2"):
        out = tmp_path / mode
        tree = runs.run_tree(scene_info, out, mode, iters=8, model=pretrained,
                             experiment={"device": "cuda"}, train={"amp": True, "channels_last": True})
        train(runs.config(tree))
        info = json.loads((out / "run_info.json").read_text())
        assert info["amp"] == amp_dtype
        records = read_metrics(out, "train")
        assert len(records) == 8 and all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
        state = ckpt.load_checkpoint(out / "checkpoint_last.pt")
        assert state["iteration"] == 8
        assert all(t.device.type == "cpu" for t in state["model"].values())  # loadable anywhere
        if amp_dtype == "float16":
            assert state["scaler"]["scale"] > 0
        thresholds = [v for k, v in state["losses"].items() if k.endswith("thresholds")]
        assert thresholds and all(not torch.all(t == 0.8) for t in thresholds)


def test_resume_on_cuda_matches_an_uninterrupted_run(scene_info, source_only_run, tmp_path, monkeypatch):
    def run_dir(name: str, resume: bool = False):
        tree = runs.run_tree(scene_info, tmp_path / name, "stage2", iters=6,
                             model={"pretrained": str(source_only_run / "checkpoint_last.pt")},
                             experiment={"device": "cuda"},
                             train={"checkpoint_every": 3, "amp": False, "deterministic": True})
        train(runs.config(tree), resume=resume)

    run_dir("straight")
    run_dir("straight_again")  # run-to-run spread of the CUDA kernels that stay non-deterministic
    runs.run_killed(monkeypatch, 4, lambda: run_dir("killed"))
    run_dir("killed", resume=True)
    a, b, resumed = (ckpt.load_checkpoint(tmp_path / name / "checkpoint_last.pt")
                     for name in ("straight", "straight_again", "killed"))
    assert resumed["iteration"] == 6 and resumed["data"] == a["data"]
    for group in ("model", "losses"):
        for name, value in a[group].items():
            if value.is_floating_point():
                spread = float((b[group][name] - value).abs().max())
                error = float((resumed[group][name] - value).abs().max())
                assert error <= 10 * spread + 1e-6, f"{group}.{name}: resumed differs by {error}, runs by {spread}"
