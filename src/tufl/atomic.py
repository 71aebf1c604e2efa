"""Atomic file writes: a temporary file in the destination folder, then a rename.

A crash or a kill mid-write never leaves a truncated file under the final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; outputs are meant to be shared
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, writer: Callable[[IO[Any]], None], binary: bool = True) -> None:
    """Call ``writer(handle)`` on a temporary file, fsync it and rename it to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if binary else "w") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda h: h.write(text), binary=False)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda h: h.write(data))
