"""Atomic, durable file writes: a temporary file in the destination folder, then a rename.

A crash or a kill mid-write never leaves a truncated file under the final name: the
temporary file's data is flushed to the disk (fsync) before the rename, and the
folder after it, so that after a power loss the name points either to the old file
or to the complete new one. A write that fails (a full disk, no permission) raises
:class:`WriteFailed` naming the file, after closing and removing the temporary file, so that
a full disk gets its space back before the error travels on.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image


def fsync_path(path: str | Path) -> None:
    """Flush a file's or a folder's data to the disk (folders: where the OS allows it)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if Path(path).is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        if Path(path).is_dir():  # e.g. Windows cannot open folders: nothing to flush there
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteFailed(OSError):
    """An output could not be written: ``strerror`` is "cannot write PATH: REASON", ``errno`` the
    cause's (ENOSPC for a full disk), ``path`` and ``reason`` the two parts."""

    def __init__(self, path: str | Path, reason: str, number: int | None = None) -> None:
        super().__init__(number if number is not None else errno.EIO, f"cannot write {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def failure_reason(error: BaseException) -> str:
    """Why a write failed, in a few words: the OS's reason (``No space left on device``) when one
    is in the exception's chain, else its first line."""
    for cause in exception_chain(error):
        if isinstance(cause, OSError) and cause.errno is not None:
            return cause.reason if isinstance(cause, WriteFailed) else (cause.strerror or str(cause))
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def failure_errno(error: BaseException) -> int:
    """The errno of the first OS error in the chain of ``error`` (EIO when there is none)."""
    return next((c.errno for c in exception_chain(error) if isinstance(c, OSError) and c.errno), errno.EIO)


def exception_chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from or during, each once."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def drop_frames(error: BaseException) -> None:
    """Let go of the stack frames an exception (and its chain) keeps alive: a failed writer's
    frames may hold an open handle of a deleted temporary file, whose space a full disk
    does not get back while they live."""
    for cause in exception_chain(error):
        cause.__traceback__ = None


@contextmanager
def naming_failures(path: str | Path) -> Iterator[None]:
    """Turn an OS error raised in the block into :class:`WriteFailed` naming ``path`` (e.g. an
    append to a log file on a full disk, whose own error names no file)."""
    try:
        yield
    except WriteFailed:
        raise
    except OSError as error:
        drop_frames(error)
        raise WriteFailed(path, failure_reason(error), error.errno) from None


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it, rename it into place
    and fsync the folder. On failure the temporary file is removed and ``path`` is untouched;
    an OS error becomes :class:`WriteFailed` naming ``path`` (the caller must have closed the
    files it opened on the temporary path, as :func:`atomic_write` does)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise WriteFailed(path, failure_reason(error), error.errno) from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; outputs are meant to be shared
        yield Path(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except OSError as error:  # disk full, no permission, ...: name the file that was not written
        _remove(Path(tmp))
        drop_frames(error)
        raise WriteFailed(path, failure_reason(error), failure_errno(error)) from error
    except BaseException:
        _remove(Path(tmp))
        raise
    fsync_path(path.parent)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # the folder went away or became read-only: nothing more to clean
        pass


def atomic_write(path: str | Path, writer: Callable[[IO[Any]], None], binary: bool = True) -> None:
    """Call ``writer(handle)`` on a temporary file and move it durably to ``path``. The handle is
    closed before anything else happens on failure, so a full disk gets its space back."""
    with atomic_path(path) as tmp:
        handle = open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8")
        try:
            writer(handle)
        except BaseException:
            _close_quietly(handle)  # the writer's error is the one to report
            raise
        handle.close()  # a failed flush here raises: the write did not happen


def _close_quietly(handle: IO[Any]) -> None:
    """Close ``handle``; a second failure (flushing onto a full disk) is dropped, the descriptor
    is released all the same."""
    try:
        handle.close()
    except OSError:
        pass


def atomic_write_text(path: str | Path, text: str) -> Path:
    atomic_write(path, lambda h: h.write(text), binary=False)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda h: h.write(data))


def json_safe(value: Any) -> Any:
    """Non-finite floats become ``None``, tuples lists, paths strings (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented strict JSON (NaN and inf become ``null``)."""
    atomic_write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")
    return Path(path)


def atomic_save_png(path: str | Path, array: np.ndarray) -> Path:
    """Save a ``uint8`` ``[H, W]`` (grey) or ``[H, W, 3]`` (RGB) array as a PNG."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"{path}: expected a uint8 [H, W] or [H, W, 3] array, got {array.dtype} {array.shape}")
    image = Image.fromarray(np.ascontiguousarray(array))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)
