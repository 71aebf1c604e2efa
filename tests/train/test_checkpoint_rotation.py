"""Saving a checkpoint while keeping older versions: a kill (or a failure) between any two steps
leaves the newest complete checkpoint under a name resume finds, and resume says which."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tufl.runtime import checkpoint_files as ckpt
from tufl.runtime.atomic import WriteFailed
from tufl.runtime.distributed import DistContext
from tufl.train.run_state import RunPaths, checkpoint_to_resume

CTX = DistContext()
# The renames of save number 4 with keep=3 (last, .1 and .2 exist): the new file takes the
# pending name, .1 -> .2, last -> .1, pending -> last.
RENAMES = 4

# Saves iterations 1..3, then saves 4 and is killed (SIGKILL) just before rename number KILL_AT.
KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys
    from tufl.runtime import checkpoint_files as ckpt
    last, kill_at = sys.argv[1], int(sys.argv[2])
    for iteration in (1, 2, 3):
        ckpt.save_checkpoint(last, {"iteration": iteration}, keep=3)
    real_replace, calls = os.replace, []
    def replace(src, dst):
        calls.append(dst)
        if len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)
    os.replace = replace
    ckpt.save_checkpoint(last, {"iteration": 4}, keep=3)
    print("saved", flush=True)
""")


def _iterations(paths: RunPaths) -> dict[str, int]:
    return {p.name: ckpt.load_checkpoint(p)["iteration"] for p in ckpt.checkpoint_versions(paths.last)}


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4, 5])
def test_a_kill_at_any_step_of_a_save_resumes_from_the_newest_complete_checkpoint(kill_at, tmp_path, capsys):
    paths = RunPaths(tmp_path)
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(paths.last), str(kill_at)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == (0 if kill_at > RENAMES else -signal.SIGKILL), done.stderr[-2000:]
    complete = _iterations(paths)
    # every version still there is complete, and the new one is among them once it was flushed
    newest = 3 if kill_at == 1 else 4
    assert max(complete.values()) == newest
    assert sorted(complete.values(), reverse=True)[:2] == [newest, newest - 1]
    state, path = checkpoint_to_resume(paths, "auto", CTX)
    assert state["iteration"] == newest
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"[tufl] --resume: resuming from {path} (iteration {newest}")
    pending = ckpt.pending_checkpoint(paths.last)
    assert (path == pending) == (1 < kill_at <= RENAMES)
    if path == pending:
        assert "complete, but the run stopped before renaming it to checkpoint_last.pt" in line
    assert not list(tmp_path.glob(".*.tmp"))  # the killed write's temporary file is gone
    ckpt.save_checkpoint(paths.last, {"iteration": newest + 1}, keep=3)  # the resumed run saves on
    versions = _iterations(paths)
    assert list(versions) == ["checkpoint_last.pt", "checkpoint_last.1.pt", "checkpoint_last.2.pt"][:len(versions)]
    assert versions["checkpoint_last.pt"] == newest + 1 and len(versions) >= 2


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_a_failed_rename_names_the_checkpoint_and_loses_nothing(fail_at, tmp_path, monkeypatch):
    paths = RunPaths(tmp_path)
    for iteration in (1, 2, 3):
        ckpt.save_checkpoint(paths.last, {"iteration": iteration}, keep=3)
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == fail_at:
            raise PermissionError(13, "Permission denied")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(WriteFailed, match=f"cannot write {paths.last}: .*Permission denied"):
        ckpt.save_checkpoint(paths.last, {"iteration": 4}, keep=3)
    monkeypatch.setattr(os, "replace", real_replace)
    complete = sorted(_iterations(paths).values(), reverse=True)
    assert complete == ([3, 2, 1] if fail_at == 1 else [4, 3, 2])
    state, _ = checkpoint_to_resume(paths, "auto", CTX)
    assert state["iteration"] == complete[0]


def test_resume_completes_an_interrupted_save_of_the_best_checkpoint(tmp_path, capsys):
    paths = RunPaths(tmp_path)
    ckpt.save_checkpoint(paths.last, {"iteration": 4})
    ckpt.save_checkpoint(paths.best, {"iteration": 2})
    ckpt.save_checkpoint(ckpt.pending_checkpoint(paths.best), {"iteration": 4})  # stopped before its rename
    state, path = checkpoint_to_resume(paths, "auto", CTX)
    assert (state["iteration"], path) == (4, paths.last)
    assert ckpt.load_checkpoint(paths.best)["iteration"] == 4 and not ckpt.pending_checkpoint(paths.best).exists()
    assert f"completed the interrupted save of {paths.best}" in capsys.readouterr().out
