"""Kept checkpoint versions, and resume falling back from a damaged last checkpoint."""

from __future__ import annotations

import pytest
import torch

import runs
from tufl.models.weights import WeightsError
from tufl.runtime import checkpoint_files as ckpt
from tufl.runtime.distributed import DistContext
from tufl.train.engine import train
from tufl.train.run_state import RunPaths, checkpoint_to_resume

CTX = DistContext()


def _iteration(path) -> int:
    return ckpt.load_checkpoint(path)["iteration"]


def test_saving_keeps_the_previous_versions(tmp_path):
    last = tmp_path / ckpt.LAST_NAME
    for iteration in range(1, 5):
        ckpt.save_checkpoint(last, {"iteration": iteration}, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_last.1.pt", "checkpoint_last.2.pt", "checkpoint_last.pt"]
    assert [_iteration(p) for p in ckpt.checkpoint_versions(last)] == [4, 3, 2]
    ckpt.save_checkpoint(last, {"iteration": 5})  # keep=1: only the last one is replaced
    assert [_iteration(p) for p in ckpt.checkpoint_versions(last)] == [5, 3, 2]


def test_resume_falls_back_from_a_truncated_last_checkpoint(tmp_path, capsys):
    paths = RunPaths(tmp_path)
    for iteration in (2, 4):
        ckpt.save_checkpoint(paths.last, {"iteration": iteration}, keep=2)
    paths.last.write_bytes(paths.last.read_bytes()[:100])  # a write cut short, a full disk
    state, path = checkpoint_to_resume(paths, True, CTX)
    assert state["iteration"] == 2 and path == ckpt.older_checkpoint(paths.last, 1)
    message = capsys.readouterr().out
    assert f"cannot read checkpoint {paths.last}" in message and f"resuming from {path} instead" in message
    ckpt.older_checkpoint(paths.last, 1).write_bytes(b"")
    with pytest.raises(WeightsError, match="cannot resume: no readable checkpoint"):
        checkpoint_to_resume(paths, True, CTX)
    with pytest.raises(FileExistsError, match="already holds a run"):
        checkpoint_to_resume(paths, False, CTX)


def test_a_run_resumed_from_the_previous_checkpoint_ends_as_an_uninterrupted_one(scene_info, tmp_path):
    trees = {name: runs.run_tree(scene_info, tmp_path / name, "source_only", iters=6,
                                 train={"deterministic": True, "checkpoint_every": 2})
             for name in ("straight", "damaged")}
    train(runs.config(trees["straight"]))
    train(runs.config(trees["damaged"]))  # checkpoints at 2, 4 and 6; 4 and 6 kept (the default, 2)
    last = tmp_path / "damaged" / ckpt.LAST_NAME
    assert [_iteration(p) for p in ckpt.checkpoint_versions(last)] == [6, 4]
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # the last write was cut short
    train(runs.config(trees["damaged"]), resume=True)  # from iteration 4, on to 6
    straight = ckpt.load_checkpoint(tmp_path / "straight" / ckpt.LAST_NAME)
    resumed = ckpt.load_checkpoint(last)
    assert resumed["iteration"] == straight["iteration"] == 6
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key


def test_resuming_removes_the_temporary_files_of_a_killed_write(tmp_path, capsys):
    paths = RunPaths(tmp_path)
    ckpt.save_checkpoint(paths.last, {"iteration": 2})
    stale = tmp_path / f".{ckpt.LAST_NAME}.k3j9.tmp"  # a SIGKILL during the next write
    stale.write_bytes(b"PK half a checkpoint")
    state, path = checkpoint_to_resume(paths, "auto", CTX)
    assert state["iteration"] == 2 and path == paths.last
    assert not stale.exists() and "removed 1 temporary file(s)" in capsys.readouterr().out


def test_a_checkpoint_of_the_earlier_objective_layout_resumes_to_the_same_end(scene_info, tmp_path):
    """Checkpoints written before the objective was made of terms hold the per-head loss states
    as ``unsupervised.<head>.*``; resuming from one ends as an uninterrupted run."""
    trees = {name: runs.run_tree(scene_info, tmp_path / name, "stage1", iters=4,
                                 train={"deterministic": True, "checkpoint_every": 2})
             for name in ("straight", "earlier")}
    train(runs.config(trees["straight"]))
    train(runs.config(trees["earlier"]))
    earlier = tmp_path / "earlier"
    second = ckpt.load_checkpoint(ckpt.older_checkpoint(earlier / ckpt.LAST_NAME, 1))
    assert second["iteration"] == 2 and any(k.startswith("consistency.losses.0.") for k in second["losses"])
    second["losses"] = {k.replace("consistency.losses.", "unsupervised."): v for k, v in second["losses"].items()}
    (earlier / ckpt.LAST_NAME).unlink()
    ckpt.older_checkpoint(earlier / ckpt.LAST_NAME, 1).unlink()
    torch.save(second, earlier / ckpt.LAST_NAME)  # as the earlier layout wrote it (iteration 2)
    train(runs.config(trees["earlier"]), resume=True)
    straight = ckpt.load_checkpoint(tmp_path / "straight" / ckpt.LAST_NAME)
    resumed = ckpt.load_checkpoint(earlier / ckpt.LAST_NAME)
    assert resumed["iteration"] == 4 and resumed["losses"].keys() == straight["losses"].keys()
    for part in ("model", "losses"):
        for key, value in straight[part].items():
            assert torch.equal(value, resumed[part][key]), key
