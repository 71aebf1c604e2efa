"""Atomic, durable file writes: a temporary file in the destination folder, then a rename.

A crash or a kill mid-write never leaves a truncated file under the final name: the
temporary file's data is flushed to the disk (fsync) before the rename, and the
folder after it, so that after a power loss the name points either to the old file
or to the complete new one.
"""

from __future__ import annotations

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


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it, rename it into place
    and fsync the folder. On failure the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; outputs are meant to be shared
    try:
        yield Path(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except OSError as error:  # disk full, no permission, ...: name the file that was not written
        Path(tmp).unlink(missing_ok=True)
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}") from error
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def atomic_write(path: str | Path, writer: Callable[[IO[Any]], None], binary: bool = True) -> None:
    """Call ``writer(handle)`` on a temporary file and move it durably to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8") as handle:
            writer(handle)


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
