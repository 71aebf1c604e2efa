"""A training run with rare-class sampling: it draws by class, and resumes bit for bit on the CPU."""

from __future__ import annotations

import torch

import runs
from tufl.runtime import checkpoint_files as ckpt
from tufl.train.engine import Trainer, train

ITERS = 4


def _tree(scene_info, out, **extra):
    # 64x32 scenes hold 2048 pixels: DAFormer's 3000-pixel minimum cannot apply.
    rcs = {"enabled": True, "min_pixels": 40, "min_crop_ratio": 0.5}
    return runs.run_tree(scene_info, out, "source_only", iters=ITERS,
                         data={"rare_class_sampling": rcs, "source_aug": {"scale_range": [1.0, 1.5]}, "val": None},
                         train={"deterministic": True, "checkpoint_every": 2}, **extra)


def test_rare_class_run_resumes_bit_for_bit(scene_info, tmp_path, monkeypatch, capsys):
    train(runs.config(_tree(scene_info, tmp_path / "straight")))
    assert "[tufl] rare-class sampling (T=0.01, min_pixels=40)" in capsys.readouterr().out
    runs.run_killed(monkeypatch, 3, lambda: train(runs.config(_tree(scene_info, tmp_path / "killed"))))
    assert ckpt.load_checkpoint(tmp_path / "killed" / ckpt.LAST_NAME)["iteration"] < ITERS
    train(runs.config(_tree(scene_info, tmp_path / "killed")), resume=True)
    straight, resumed = (ckpt.load_checkpoint(tmp_path / name / ckpt.LAST_NAME) for name in ("straight", "killed"))
    assert resumed["iteration"] == straight["iteration"] == ITERS and resumed["data"] == straight["data"]
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key


def test_rare_class_sampling_changes_the_source_stream(scene_info, tmp_path):
    """The same run without it trains on other source crops, hence other weights."""
    with_rcs = Trainer(runs.config(_tree(scene_info, tmp_path / "rcs")))
    plain_tree = _tree(scene_info, tmp_path / "plain")
    plain_tree["data"]["rare_class_sampling"]["enabled"] = False
    plain = Trainer(runs.config(plain_tree))
    try:
        a, b = next(with_rcs.source_loader), next(plain.source_loader)
        assert with_rcs.data.rare_classes is not None and plain.data.rare_classes is None
        assert not torch.equal(a["index"], b["index"]) or not torch.equal(a["label"], b["label"])
    finally:
        for trainer in (with_rcs, plain):
            trainer.source_loader.close()
