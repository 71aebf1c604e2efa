"""Session-wide fixtures: generated scene data and a short source-only run to start from."""

from __future__ import annotations

from pathlib import Path

import pytest

import runs


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
