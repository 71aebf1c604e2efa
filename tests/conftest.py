"""Session-wide fixtures: generated scene data and a short source-only run to start from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import runs


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` (beside their subsystem, e.g. tests/losses/test_losses_cuda.py) are
    skipped where no CUDA device is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def scene_info(tmp_path_factory):
    return runs.scene_data(tmp_path_factory.mktemp("scenes"))


@pytest.fixture(scope="session")
def source_only_run(scene_info, tmp_path_factory) -> Path:
    """Run directory of a 20-iteration source-only BiSeNet (with validation)."""
    from tufl.train.engine import train

    out = tmp_path_factory.mktemp("source_only")
    tree = runs.run_tree(scene_info, out, "source_only", iters=20, train={"val_every": 10, "checkpoint_every": 10})
    train(runs.config(tree))
    return out
