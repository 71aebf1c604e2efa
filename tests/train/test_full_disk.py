"""A full disk during a run: the error names the checkpoint (never run_info.json), the failed
file's handle is released so its space comes back, nothing half-written stays, the earlier
checkpoints are intact, and the command exits with status 1.

CI cannot mount a small filesystem, so the disk is faked: writes that fail with ENOSPC after part
of the file (the real torch.save into them), a "disk" that stays full while a deleted
temporary file is still open, and the process's file-size limit (RLIMIT_FSIZE) in a subprocess.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import runs
from tufl.cli import main
from tufl.runtime import atomic
from tufl.runtime import checkpoint_files as ckpt
from tufl.runtime.atomic import WriteFailed


def open_deleted_files(folder: Path) -> list[str]:
    """Files under ``folder`` this process still holds open although they were deleted (Linux)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)) and target.endswith(" (deleted)"):
            found.append(target)
    return found


class FillingWriter:
    """A file that takes ``room`` bytes, then fails like a full disk (after a partial write)."""

    def __init__(self, handle: Any, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data: Any) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.handle.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def fill_disk_on_save(monkeypatch: pytest.MonkeyPatch, saves_that_fit: int, room: int = 4096) -> list[Any]:
    """Make ``torch.save`` of the checkpoints after the first ``saves_that_fit`` run out of disk;
    returns the handles they were given."""
    real_save, handles = torch.save, []

    def save(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        handles.append(handle)
        if len(handles) <= saves_that_fit:
            return real_save(obj, handle, *args, **kwargs)
        return real_save(obj, FillingWriter(handle, room), *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", save)
    return handles


def test_a_save_that_fills_the_disk_releases_its_file_and_names_the_checkpoint(tmp_path, monkeypatch):
    last = tmp_path / ckpt.LAST_NAME
    handles = fill_disk_on_save(monkeypatch, saves_that_fit=2)
    state = {"model": {"w": torch.randn(100_000)}}
    for iteration in (1, 2):
        ckpt.save_checkpoint(last, {**state, "iteration": iteration}, keep=2)
    with pytest.raises(WriteFailed) as raised:
        ckpt.save_checkpoint(last, {**state, "iteration": 3}, keep=2)
    assert str(raised.value) == f"[Errno 28] cannot write {last}: No space left on device"
    assert raised.value.errno == errno.ENOSPC and raised.value.path == last
    assert handles[-1].closed and not open_deleted_files(tmp_path)  # the space is back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_last.1.pt", "checkpoint_last.pt"]
    assert [ckpt.load_checkpoint(p)["iteration"] for p in ckpt.checkpoint_versions(last)] == [2, 1]


def test_a_run_on_a_full_disk_stops_naming_the_checkpoint_and_records_its_outcome(
        scene_info, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    config = runs.write_yaml(runs.run_tree(scene_info, run, "source_only", 6, data={"val": None}), tmp_path / "c.yaml")
    handles = fill_disk_on_save(monkeypatch, saves_that_fit=1)
    real_open = open

    def disk_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        """The disk stays full while the failed checkpoint's deleted file is held open."""
        if "w" in mode and open_deleted_files(run):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(atomic, "open", disk_open, raising=False)
    assert main(["train", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith(f"error: cannot write {run / ckpt.LAST_NAME}: No space left on device. "
                                "Training stopped at iteration 4")
    assert "intact (checkpoint_last.pt)" in errors[0]
    assert handles[-1].closed and not open_deleted_files(run)
    assert ckpt.load_checkpoint(run / ckpt.LAST_NAME)["iteration"] == 2
    assert json.loads((run / "run_info.json").read_text())["last_iteration"] == 4  # the outcome, recorded
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp") or ".new." in p.name]


def test_writes_that_end_a_failed_run_are_notes_beside_its_error(scene_info, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    config = runs.write_yaml(runs.run_tree(scene_info, run, "source_only", 4, data={"val": None}), tmp_path / "c.yaml")
    fill_disk_on_save(monkeypatch, saves_that_fit=0)
    real_write = atomic.atomic_write

    def full_after_a_checkpoint(path: Any, *args: Any, **kwargs: Any) -> None:
        """The disk is full for every file once a checkpoint write has failed."""
        if Path(path).name == "run_info.json" and (run / "metrics.jsonl").stat().st_size:
            raise WriteFailed(path, "No space left on device", errno.ENOSPC)
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(atomic, "atomic_write", full_after_a_checkpoint)
    assert main(["train", "--config", str(config)]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[0] == f"[tufl] note: in addition, cannot write {run / 'run_info.json'}: No space left on device"
    assert lines[1].startswith(f"error: cannot write {run / ckpt.LAST_NAME}: No space left on device. ")
    assert len(lines) == 2


def test_a_full_metrics_log_is_named(scene_info, tmp_path, monkeypatch, capsys):
    from tufl.runtime.run_log import MetricsLog

    run = tmp_path / "run"
    config = runs.write_yaml(runs.run_tree(scene_info, run, "source_only", 4, data={"val": None}), tmp_path / "c.yaml")

    def full(self: MetricsLog, *args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(MetricsLog, "write", full)
    assert main(["train", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: cannot write {run / 'metrics.jsonl'}: No space left on device"


# The real torch.save writing into a file past the process's file-size limit (what a full disk
# does to a write), in a subprocess; the end of the run reports the files it still holds open.
FILE_SIZE_LIMIT = textwrap.dedent("""
    import json, os, resource, signal, sys
    from tufl.cli import main
    from tufl.train import engine
    run, limit = sys.argv[1], int(sys.argv[3])

    def open_deleted_files(folder):
        links = (os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                 if os.path.islink(f"/proc/self/fd/{fd}"))
        return [t for t in links if t.startswith(folder) and t.endswith(" (deleted)")]

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    real = engine.record_outcome
    def record_outcome(*args):
        print("held open at the end:", json.dumps(open_deleted_files(run)), flush=True)
        return real(*args)
    engine.record_outcome = record_outcome
    sys.exit(main(["train", "--config", sys.argv[2]]))
""")


def test_the_real_writer_past_the_file_size_limit_gives_its_space_back(scene_info, tmp_path):
    run = tmp_path / "run"
    config = runs.write_yaml(runs.run_tree(scene_info, run, "source_only", 2, data={"val": None}), tmp_path / "c.yaml")
    done = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, str(run), str(config), str(20 << 20)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "held open at the end: []" in done.stdout
    assert done.stderr.strip().startswith(f"error: cannot write {run / ckpt.LAST_NAME}: File too large. ")
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in run.iterdir()) == [".tufl.lock", "config.yaml", "metrics.jsonl", "run_info.json"]
