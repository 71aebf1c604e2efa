"""Tiny training runs on generated driving scenes in the GTA5 and Cityscapes layouts."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tufl.runtime.typed_config import from_dict
from tufl.config.schema import Config
from tufl.demo.scenes import DemoDataInfo, ensure_demo_data

SIZE = (64, 32)


def scene_data(root: Path) -> DemoDataInfo:
    """8 source, 8 target-train and 4 target-val scenes of 64x32 (cached under ``root``)."""
    return ensure_demo_data(root, seed=0, size=SIZE, n_source=8, n_target_train=8, n_target_val=4, workers=1)


def run_tree(info: DemoDataInfo, out: Path, mode: str, iters: int = 6, **sections: dict[str, Any]) -> dict:
    """A config tree for a tiny BiSeNet run; ``sections`` deep-update it."""
    tree: dict[str, Any] = {
        "experiment": {"name": mode, "output_dir": str(out), "mode": mode, "device": "cpu", "seed": 3},
        "model": {"arch": "bisenet", "freeze_bn": False, "num_classes": 19},
        "data": {
            "source": {"name": "gta5", "root": str(info.source_root), "split": "train"},
            "target": {"name": "cityscapes", "root": str(info.target_root), "split": "train"},
            "val": {"name": "cityscapes", "root": str(info.target_root), "split": "val"},
            "batch_size": 2, "num_workers": 0,
            "source_aug": {"crop_size": list(SIZE)}, "target_views": {"crop_size": list(SIZE)},
        },
        "loss": {"unsupervised": "none" if mode == "source_only" else "tufl"},
        "optim": {"lr": 0.01},
        "train": {"iters": iters, "log_every": 1, "checkpoint_every": 2, "val_every": 0, "progress": False,
                  "tensorboard": False},
    }
    for key, update in sections.items():
        _deep_update(tree.setdefault(key, {}), update)
    return tree


def _deep_update(node: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(node.get(key), dict):
            _deep_update(node[key], value)
        else:
            node[key] = copy.deepcopy(value)


def config(tree: dict) -> Config:
    return from_dict(Config, copy.deepcopy(tree))


def write_yaml(tree: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(tree))
    return path


class Crash(Exception):
    """Stands in for a killed process."""


def run_killed(monkeypatch: pytest.MonkeyPatch, at_iteration: int, run: Callable[[], object]) -> None:
    """``run()`` a training whose process is killed as it reaches ``at_iteration`` (after the
    checkpoints written before it): ``Trainer.train_step`` raises :class:`Crash` there."""
    from tufl.train.engine import Trainer

    original = Trainer.train_step

    def crash_at(self):
        if self.iteration == at_iteration:
            raise Crash
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", crash_at)
    try:
        with pytest.raises(Crash):
            run()
    finally:
        monkeypatch.setattr(Trainer, "train_step", original)
