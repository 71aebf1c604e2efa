"""The run folder while a run owns it: its lock, and the writes that end the run.

A run holds :class:`~tufl.runtime.folder_lock.FolderLock` on its folder from before it reads
or deletes anything there (stale temporary files, the checkpoint to resume, the metrics log)
until it ends, so a second run or a second ``--resume auto`` in a live folder is refused,
naming the holder. When a run ends, its last writes (closing the metrics log,
``bad_samples.json``, the outcome in ``run_info.json``) never hide the error that ended it: on
a full disk they fail too, and are only noted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tufl.runtime.atomic import WriteFailed, naming_failures
from tufl.runtime.distributed import DistContext, all_true
from tufl.runtime.errors import FolderLockedError
from tufl.runtime.folder_lock import FolderLock


def lock_run_folder(root: Path, ctx: DistContext) -> FolderLock | None:
    """Rank 0 takes the lock of ``root`` (:class:`FolderLockedError` when another process holds
    it); under DDP every rank learns whether it could (one all-reduce). Returns rank 0's lock."""
    lock: FolderLock | None = None
    refused: FolderLockedError | None = None
    if ctx.is_main:
        try:
            lock = FolderLock(root, "run").acquire()
        except FolderLockedError as error:
            refused = error
    if all_true(refused is None, ctx):
        return lock
    raise refused or FolderLockedError(f"{root} is in use by another process (rank 0 could not lock it)")


def release_lock(lock: FolderLock | None) -> None:
    """Release ``lock`` (None: nothing to release)."""
    if lock is not None:
        lock.release()


# One write that ends a run: (the file it writes, the call).
EndWrite = tuple[Path, Callable[[], None]]


def finish_writes(writes: Sequence[EndWrite], failure: BaseException | None) -> None:
    """Do the writes that end a run, each tried whatever happened to the others. After a
    ``failure`` (the error ending the run, reported by the caller) their own errors are printed
    as notes; otherwise the first is raised once all were tried, naming its file."""
    first: BaseException | None = None
    for path, write in writes:
        try:
            with naming_failures(path):
                write()
        except Exception as error:  # noqa: BLE001 - reported, never hiding the run's own error
            if failure is None and first is None:
                first = error
                continue
            text = error.strerror if isinstance(error, WriteFailed) else f"{path}: {error}"
            print(f"[tufl] note: in addition, {text}", file=sys.stderr, flush=True)
    if first is not None:
        raise first
