"""An advisory lock on a folder that one process writes (a run, pseudo-labels, a prepared copy).

``with FolderLock(folder, "run"):`` holds an exclusive ``flock`` on ``folder/.tufl.lock``
for the block. The operating system releases it when the process ends, however it ends,
so a killed run never blocks its own resume; the file keeps the holder's PID, host and
start time, which a refused second writer names. A lock file left by a process that is
gone is simply taken over (the kernel lock is free); forked children (data-loading workers) do
not keep it. On a filesystem without ``flock`` (some network mounts) the lock is skipped with a
note rather than failing the run.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
from pathlib import Path
from typing import Any

from tufl.runtime.errors import FolderLockedError

LOCK_NAME = ".tufl.lock"

# Locks this process holds (until released or the process ends). A forked child (a DataLoader
# worker) closes its copies at once: a lock ends with the process that took it, not with the last
# of its workers.
_HELD: set[FolderLock] = set()


def _close_in_child() -> None:
    for lock in list(_HELD):
        if lock._fd is not None:
            os.close(lock._fd)
            lock._fd = None
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class FolderLock:
    """Exclusive advisory lock of ``folder`` for ``what`` (e.g. "run", "pseudo-labels")."""

    def __init__(self, folder: str | os.PathLike[str], what: str = "run") -> None:
        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`FolderLockedError` naming the holder."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform (Windows)
            self._note("this platform has no flock")
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise FolderLockedError(self._held_message()) from None
            if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                self._note(error.strerror or str(error))
                return self
            raise
        self._fd = fd
        _HELD.add(self)
        self._write_holder(fd)
        return self

    def _write_holder(self, fd: int) -> None:
        """Record this process as the holder; a full disk leaves the record empty, not the lock."""
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                  "since": datetime.datetime.now().isoformat(timespec="seconds")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError:  # a refused writer then names "another process"
            pass

    def _note(self, why: str) -> None:
        print(f"[tufl] note: {self.folder} cannot be locked ({why}); make sure no other process writes this "
              f"{self.what} folder", flush=True)

    def release(self) -> None:
        """Release the lock (the file stays; a later holder overwrites its contents)."""
        fd = self._fd
        if fd is not None:
            self._fd = None
            _HELD.discard(self)
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def holder(self) -> dict[str, Any]:
        """What the lock file says of its holder ({} when unreadable)."""
        try:
            value = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def _held_message(self) -> str:
        who = self.holder()
        by = (f"process {who.get('pid', '?')} on {who.get('host', '?')} (since {who.get('since', '?')})"
              if who else "another process")
        return (f"{self.folder} is in use by {by}, which is writing this {who.get('what', self.what)} folder; "
                f"wait for it to end or stop it, or choose another folder")
