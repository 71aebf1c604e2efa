"""The on-disk layout of a prepared copy (:mod:`tufl.data.prepared`): identity, names, encoding.

Shared by reading a copy (:mod:`tufl.data.prepared`) and writing one
(:mod:`tufl.data.prepared_write`): what a copy depends on (:func:`copy_identity`),
where it and its files lie (:func:`copy_folder`, :func:`sample_file`), how a file
encodes an array (:func:`encode`, and back: :func:`decode`, or :func:`read_checked` then
:func:`decode_bytes`, which checks the file against its recorded size and CRC-32 first),
and the ``stat`` records that tell whether the originals changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tufl.data.base import SegDataset
from tufl.data.io import DEFAULT_MAX_IMAGE_PIXELS, open_image

FORMATS = ("npy", "png")
MANIFEST = "manifest.json"
JOURNAL = "progress.jsonl"
SAMPLES = "samples"
LAYOUT_VERSION = 1
# Pillow's default level 6 wrote 2x slower for 15 % less disk (generated 1024x512 images).
PNG_COMPRESS_LEVEL = 1

# One sample of a copy as its manifest records it: index, name, originals, files, shape, bad.
Record = dict[str, Any]
_NPY_HEAD = 4096  # bytes that hold an npy header (np.save writes about 128)


# --- identity ---------------------------------------------------------------------------
def label_mapping_digest(base: SegDataset) -> str:
    """SHA-256 of the tables that turn raw label values into train ids (class files included)."""
    tables = [getattr(base.map_label, "lut", None), getattr(base, "_lut", None)]
    try:
        tables.append(base.label_lut)
    except (ValueError, NotImplementedError):  # unlabelled own data
        tables.append(None)
    digest = hashlib.sha256()
    for table in tables:
        if table is None:
            digest.update(b"none;")
            continue
        array = np.ascontiguousarray(table)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def copy_identity(base: SegDataset) -> dict[str, Any]:
    """What a prepared copy of ``base`` depends on (compared with its manifest)."""
    root = os.path.abspath(base.root)
    listing = hashlib.sha256()
    for s in base.samples:
        label = "-" if s.label is None else os.path.relpath(s.label, root)
        listing.update(f"{s.name}\t{os.path.relpath(s.image, root)}\t{label}\n".encode())
    identity: dict[str, Any] = {
        "dataset": type(base).__name__,
        "root": root,
        "split": base.split,
        "samples": len(base),
        "sample_list": listing.hexdigest(),
        "resize": None if base.resize is None else list(base.resize),
        "interpolation": base.interpolation,
        "num_classes": base.num_classes,
        "label_mapping": label_mapping_digest(base),
    }
    if base.max_image_pixels != DEFAULT_MAX_IMAGE_PIXELS:  # which originals are bad depends on it
        identity["max_image_pixels"] = base.max_image_pixels
    return identity


def copy_folder(base: SegDataset, prepared_dir: str | os.PathLike[str]) -> Path:
    """``<prepared_dir>/<dataset>-<split>-<W>x<H or native>-<hash12>`` of ``base``."""
    size = "native" if base.resize is None else f"{base.resize[0]}x{base.resize[1]}"
    split = re.sub(r"[^A-Za-z0-9._-]+", "_", base.split)
    digest = hashlib.sha256(json.dumps(copy_identity(base), sort_keys=True).encode()).hexdigest()[:12]
    return Path(prepared_dir) / f"{base.name}-{split}-{size}-{digest}"


def sample_file(index: int, part: str, fmt: str) -> str:
    """Relative path of one prepared file (``samples/0001/001234.image.npy``)."""
    return f"{SAMPLES}/{index // 1000:04d}/{index:06d}.{part}.{fmt}"


# --- encoding ---------------------------------------------------------------------------
def encode(array: np.ndarray, fmt: str) -> bytes:
    """The bytes of one prepared file of ``array`` in format ``fmt`` (``npy`` or ``png``)."""
    buffer = io.BytesIO()
    if fmt == "npy":
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    else:
        Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def decode(path: str | os.PathLike[str], fmt: str) -> np.ndarray:
    """The array of one prepared file (:func:`encode` read back)."""
    if fmt == "npy":
        return np.load(path, allow_pickle=False)
    return np.asarray(open_image(path, DEFAULT_MAX_IMAGE_PIXELS))


def read_checked(path: str | os.PathLike[str], size: int, crc: int) -> bytearray:
    """The bytes of a prepared file; ValueError when they are not the ``size`` bytes of CRC-32
    ``crc`` its manifest records (bit rot, a partial overwrite)."""
    data = bytearray(size)
    with open(path, "rb") as handle:
        got = handle.readinto(data)
        extra = handle.read(1)
    if got != size or extra:
        raise ValueError(f"holds another number of bytes than the {size} recorded")
    if zlib.crc32(data) != crc:
        raise ValueError("its CRC-32 differs from the one recorded (the file changed on the disk)")
    return data


def decode_bytes(data: bytearray, fmt: str, path: str | os.PathLike[str], max_pixels: int) -> np.ndarray:
    """The array of the bytes of the prepared file ``path`` (:func:`read_checked`); ``npy``
    without a copy, ``png`` through :func:`tufl.data.io.open_image` (``max_pixels``)."""
    if fmt != "npy":
        return np.asarray(open_image(path, max_pixels, data))
    head = io.BytesIO(bytes(memoryview(data)[:_NPY_HEAD]))
    version = np.lib.format.read_magic(head)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = reader(head)
    if dtype.hasobject:
        raise ValueError("holds Python objects")
    array = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=head.tell())
    return array.reshape(shape, order="F" if fortran else "C")


def file_stat(path: str | os.PathLike[str] | None) -> list[int] | None:
    """``[size, mtime_ns]`` of a file; None when it is absent (or ``path`` is None)."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def original_stats(base: SegDataset, index: int) -> dict[str, list[int] | None]:
    """:func:`file_stat` of the original image and label of sample ``index``."""
    s = base.samples[index]
    return {"image": file_stat(s.image), "label": file_stat(s.label)}


def read_manifest(folder: Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` of the copy in ``folder``."""
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
