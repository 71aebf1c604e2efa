"""Atomic, durable writes: fsync before and after the rename, nothing half-written on failure."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tufl.runtime import atomic


def test_file_is_flushed_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_open = os.fsync, os.replace, os.open
    opened: dict[int, str] = {}

    def recording_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        opened[fd] = os.fspath(path)
        return fd

    def recording_fsync(fd):
        events.append(("fsync", opened.get(fd, "?")))
        return real_fsync(fd)

    def recording_replace(src, dst):
        events.append(("replace", os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    target = tmp_path / "out" / "state.json"
    atomic.atomic_write_json(target, {"a": 1})
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"]
    assert Path(events[0][1]).parent == target.parent and Path(events[0][1]).name.startswith(".state.json.")
    assert events[1][1] == str(target) and events[2][1] == str(target.parent)
    assert target.read_text() == '{\n  "a": 1\n}\n'


def test_a_failing_write_leaves_the_previous_file_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"previous")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match=rf"cannot write {target}: No space left on device") as raised:
        atomic.atomic_write_bytes(target, b"new")
    assert raised.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_an_exception_inside_the_block_removes_the_temporary_file(tmp_path):
    target = tmp_path / "x.txt"
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_writer_that_fills_the_disk_leaves_nothing_open_and_names_the_file(tmp_path):
    target = tmp_path / "run_info.json"
    handles = []

    def fills_the_disk(handle):
        handles.append(handle)
        handle.write(b"{" * 10_000)  # part of it reached the file
        handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(atomic.WriteFailed) as raised:
        atomic.atomic_write(target, fills_the_disk)
    assert str(raised.value) == f"[Errno 28] cannot write {target}: No space left on device"
    assert raised.value.strerror == f"cannot write {target}: No space left on device"
    assert raised.value.path == target and raised.value.reason == "No space left on device"
    assert handles[0].closed and list(tmp_path.iterdir()) == []


def test_the_reason_of_a_failure_is_the_os_error_in_its_chain():
    try:
        try:
            raise OSError(errno.EFBIG, "File too large")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    except RuntimeError as error:
        assert atomic.failure_reason(error) == "File too large" and atomic.failure_errno(error) == errno.EFBIG
        atomic.drop_frames(error)
        assert all(e.__traceback__ is None for e in atomic.exception_chain(error))
    assert atomic.failure_reason(RuntimeError("first line\nsecond")) == "first line"


def test_an_os_error_in_a_block_is_named(tmp_path):
    log = tmp_path / "metrics.jsonl"
    with pytest.raises(atomic.WriteFailed, match=rf"cannot write {log}: No space left on device"):
        with atomic.naming_failures(log):
            raise OSError(errno.ENOSPC, "No space left on device")
