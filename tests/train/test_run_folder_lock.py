"""One run per folder: a live run's folder is refused to a second run or resume, naming the
holder; a folder whose holder died (SIGKILL) is taken over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import runs
from tufl.cli import main
from tufl.runtime import checkpoint_files as ckpt
from tufl.runtime.errors import FolderLockedError
from tufl.runtime.folder_lock import LOCK_NAME, FolderLock
from tufl.runtime.run_log import read_metrics
from tufl.train.engine import Trainer, train
from tufl.train.multi_seed import seed_folder


def _hold_lock(folder: Path, fork_child: bool = False) -> subprocess.Popen:
    """Another process holding ``folder``'s run lock (with a forked child when asked), as a live run does."""
    code = textwrap.dedent(f"""
        import os, sys, time
        from tufl.runtime.folder_lock import FolderLock
        FolderLock({str(folder)!r}, "run").acquire()
        child = os.fork() if {fork_child!r} else -1  # a data-loading worker: outlives its parent here
        if child == 0:
            time.sleep(60)
            os._exit(0)
        print("locked", child, flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    word, child = holder.stdout.readline().split()
    assert word == "locked"
    holder.child = int(child)  # type: ignore[attr-defined]
    return holder


def _kill(holder: subprocess.Popen) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)


def _end_child(holder: subprocess.Popen) -> None:
    if holder.child > 0:  # type: ignore[attr-defined]
        os.kill(holder.child, signal.SIGKILL)  # type: ignore[attr-defined]


def test_a_live_run_folder_is_refused_to_a_second_run_and_to_resume(scene_info, tmp_path, capsys):
    tree = runs.run_tree(scene_info, tmp_path / "run", "source_only", iters=2, data={"val": None})
    first = Trainer(runs.config(tree))  # alive: holds the folder until its run ends
    stale = tmp_path / "run" / f".{ckpt.LAST_NAME}.live.tmp"  # the live run's write in progress
    stale.write_bytes(b"PK half")
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    holder = f"process {os.getpid()} on {socket.gethostname()}"
    for resume in (False, "auto", "force"):
        with pytest.raises(FolderLockedError, match=f"is in use by {holder}.*writing this run folder"):
            Trainer(runs.config(tree), resume=resume)
    # the same from another process, through the command line: one line, exit status 2
    config = runs.write_yaml(tree, tmp_path / "run.yaml")
    done = subprocess.run([sys.executable, "-m", "tufl", "train", "--config", str(config), "--resume", "auto"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'run'} is in use by {holder} (since ")
    assert line.endswith("which is writing this run folder; wait for it to end or stop it, or choose another folder")
    assert stale.exists() and (tmp_path / "run" / "metrics.jsonl").read_bytes() == before  # nothing touched
    stale.unlink()
    first.run()  # ends and releases the folder
    capsys.readouterr()
    train(runs.config(tree), resume="auto")
    assert f"resuming from {tmp_path / 'run' / ckpt.LAST_NAME} (iteration 2)" in capsys.readouterr().out


def test_a_folder_whose_holder_was_killed_is_taken_over(scene_info, tmp_path, capsys):
    tree = runs.run_tree(scene_info, tmp_path / "run", "source_only", iters=2, data={"val": None})
    config = runs.write_yaml(tree, tmp_path / "run.yaml")
    holder = _hold_lock(tmp_path / "run", fork_child=True)
    try:
        assert main(["train", "--config", str(config), "--resume", "auto"]) == 2
        assert f"in use by process {holder.pid} on {socket.gethostname()}" in capsys.readouterr().err
    finally:
        _kill(holder)  # its forked child lives on, without the lock
    try:
        assert main(["train", "--config", str(config), "--resume", "auto"]) == 0
    finally:
        _end_child(holder)
    assert [r["iter"] for r in read_metrics(tmp_path / "run", "train")] == [1, 2]
    assert FolderLock(tmp_path / "run").holder()["pid"] == os.getpid()  # the lock file stays, naming its last holder
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")] == [LOCK_NAME]


def test_seeds_stop_at_a_seed_folder_another_process_trains_in(scene_info, tmp_path, capsys):
    tree = runs.run_tree(scene_info, tmp_path / "job", "source_only", 2, data={"val": None})
    config = runs.write_yaml(tree, tmp_path / "job.yaml")
    holder = _hold_lock(seed_folder(tmp_path / "job", 1))
    try:
        assert main(["train", "--config", str(config), "--seeds", "0", "1", "2"]) == 2
    finally:
        _kill(holder)
    err = capsys.readouterr().err
    assert f"in use by process {holder.pid}" in err and "seeds not run: 2" in err
    assert ckpt.load_checkpoint(seed_folder(tmp_path / "job", 0) / ckpt.LAST_NAME)["iteration"] == 2
    assert not (seed_folder(tmp_path / "job", 1) / ckpt.LAST_NAME).exists()
