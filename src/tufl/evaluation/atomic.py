"""Atomic file output: write to a temporary file in the target folder, then rename.

A reader never sees a half-written report, image or model: either the old file or
the complete new one is at ``path``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# mkstemp creates owner-only files; outputs get the usual rw-r--r-- instead.
_FILE_MODE = 0o644


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    The parent folder is created if needed. If the body raises, the temporary
    file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented, strict JSON (NaN and inf become ``null``)."""
    text = json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def save_png_atomic(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Save a ``uint8`` ``[H, W]`` (grey) or ``[H, W, 3]`` (RGB) array as a PNG."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(
            f"{path}: expected a uint8 [H, W] or [H, W, 3] array, got {array.dtype} {array.shape}"
        )
    image = Image.fromarray(np.ascontiguousarray(array))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def _json_safe(value: Any) -> Any:
    """Recursively turn non-finite floats into ``None`` and tuples into lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
