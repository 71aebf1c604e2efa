"""Prepared copies of training datasets: every sample stored at its training resolution.

A training sample from the original files costs a PNG decode of the full-size file
(about 95 ms for a 2048x1024 Cityscapes image) and a resize (about 30 ms). A prepared
copy stores what :meth:`SegDataset.load` returns (the resized ``uint8`` RGB image and
its ``uint8`` train-id label), one file each, so that loading is a plain read
(``npy``: well under a millisecond; ``png``: lossless, about half the disk, slower)
and the samples are bit for bit those of the original files.

A copy lives in ``<prepared_dir>/<dataset>-<split>-<W>x<H>-<hash12>/``; the hash is
that of its identity (dataset class, absolute root, split, sample list, resize,
interpolation, number of classes, label mapping), so other settings get another
folder. Each file is written under a temporary name and renamed, while the folder is
locked against a second writer; ``manifest.json`` comes last, after every file was read
back and its CRC-32 checked. It records the originals' size and mtime, which
:func:`find_prepared` compares (``stat`` only) before training uses the copy
(:func:`attach_prepared`). Each prepared file is checked against its recorded size and
CRC-32 again when a sample is loaded (a 1280x720 ``npy`` sample: 3.7 MB read and
summed, 0.6 to 1.5 ms more than ``np.load`` alone; ``png``: about 1 ms on 22 ms of
decoding); a file that fails, or a label holding values that are not
train ids, is not used: the sample comes from its original files, said once per file
and counted (:attr:`PreparedCopy.fallbacks`). Writing a copy,
:func:`prepare`, lives in :mod:`tufl.data.prepared_write`; the layout shared by both in
:mod:`tufl.data.prepared_layout`. Their public names are importable from here.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tufl.data.base import SegDataset
from tufl.data.io import BadFileError
from tufl.data.label_checks import check_train_ids
from tufl.data.prepared_layout import (
    FORMATS,
    JOURNAL,
    LAYOUT_VERSION,
    MANIFEST,
    PNG_COMPRESS_LEVEL,
    SAMPLES,
    Record,
    copy_folder,
    copy_identity,
    decode,
    decode_bytes,
    encode,
    file_stat,
    label_mapping_digest,
    original_stats,
    read_checked,
    read_manifest,
    sample_file,
)
from tufl.data.prepared_write import PrepareResult, prepare

_READ_ERRORS = (OSError, ValueError, EOFError, SyntaxError)


# --- loading ----------------------------------------------------------------------------
# A prepared file as the manifest records it: (relative path, size, CRC-32).
_File = tuple[str, int, int]


class PreparedCopy:
    """A verified prepared copy, attached with :meth:`SegDataset.use_prepared`."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = Path(folder).absolute()
        self.format: str = manifest["format"]
        self.total_bytes: int = int(manifest["total_bytes"])
        # per sample: (image file, label file, (height, width), (bad path, problem))
        self.entries: list[tuple[_File | None, _File | None, tuple[int, int] | None, tuple[str, str] | None]] = []
        for r in manifest["records"]:
            files = {part: (str(f[0]), int(f[1]), int(f[2])) for part, f in r["files"].items()}
            self.entries.append((
                files.get("image"),
                files.get("label"),
                None if r["shape"] is None else (int(r["shape"][0]), int(r["shape"][1])),
                None if r["bad"] is None else (str(r["bad"][0]), str(r["bad"][1])),
            ))
        self._fallbacks: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def bad(self) -> list[tuple[str, str]]:
        """``(file, problem)`` of the originals that could not be read when the copy was written."""
        return [e[3] for e in self.entries if e[3] is not None]

    @property
    def fallbacks(self) -> dict[str, str]:
        """Prepared files found unusable by this process (path -> problem); their samples were
        read from the original files."""
        return dict(self._fallbacks)

    def _read(self, file: _File, shape: tuple[int, ...], base: SegDataset) -> np.ndarray:
        relative, size, crc = file
        path = self.folder / relative
        try:
            array = decode_bytes(read_checked(path, size, crc), self.format, path, base.max_image_pixels)
            if array.dtype != np.uint8 or array.shape != shape:
                raise ValueError(f"holds a {array.dtype} array of shape {array.shape}, expected uint8 {shape}")
            if len(shape) == 2:
                check_train_ids(array, base.num_classes, path)
        except BadFileError as exc:
            raise ValueError(exc.problem) from None
        return array

    def load(self, base: SegDataset, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Sample ``index`` as ``base._load_original`` gives it; a prepared file that is unreadable,
        differs from its recorded size and CRC-32 or holds no train ids falls back to the original
        files, with one warning per file (counted in :attr:`fallbacks`)."""
        image_file, label_file, shape, bad = self.entries[index]
        if bad is not None:
            raise BadFileError(*bad)
        assert image_file is not None and shape is not None
        current = image_file
        try:
            image = self._read(image_file, (*shape, 3), base)
            label = None
            if label_file is not None:
                current = label_file
                label = self._read(label_file, shape, base)
            return image, label
        except _READ_ERRORS as exc:
            path = str(self.folder / current[0])
            if path not in self._fallbacks:
                self._fallbacks[path] = str(exc)
                warnings.warn(f"{path}: prepared file unusable ({exc}); reading sample {index} from its original "
                              f"files {base.samples[index].image} instead (rerun tufl prepare-data to repair the "
                              f"copy; {len(self._fallbacks)} prepared file(s) unusable so far)", RuntimeWarning,
                              stacklevel=2)
            return base._load_original(index)


def _first_changed(base: SegDataset, index: int, recorded: dict[str, Any]) -> str | None:
    current = original_stats(base, index)
    for part in ("image", "label"):
        if current[part] != recorded.get(part):
            return getattr(base.samples[index], part)
    return None


def _check(base: SegDataset, prepared_dir: str | os.PathLike[str] | None) -> tuple[PreparedCopy | None, str, str]:
    """``(copy or None, reason, kind)``, kind one of found, off, none, stale."""
    if prepared_dir is None:
        return None, "prepared copies are off (data.prepared_dir: null)", "off"
    folder = copy_folder(base, prepared_dir)
    if not (folder / MANIFEST).is_file():
        if folder.is_dir():
            return None, f"prepared copy {folder} is incomplete (no {MANIFEST}: tufl prepare-data did not finish)", \
                "stale"
        others = sorted(p.name for p in Path(prepared_dir).glob(f"{base.name}-*") if (p / MANIFEST).is_file()) \
            if Path(prepared_dir).is_dir() else []
        other = f"; {others[0]} was written for another split, resize, sample list or class mapping" if others else ""
        return None, f"no prepared copy under {prepared_dir}{other}", "none"
    try:
        manifest = read_manifest(folder)
        recorded = manifest.get("identity", {})
        identity = copy_identity(base)
        if manifest.get("layout_version") != LAYOUT_VERSION:
            return None, f"prepared copy {folder} has another layout version", "stale"
        if recorded != identity:
            keys = ", ".join(k for k in identity if recorded.get(k) != identity[k])
            return None, f"prepared copy {folder} was written for other settings ({keys} differ)", "stale"
        records = manifest["records"]
        damaged: list[Path] = []
        changed: list[str] = []
        for index, r in enumerate(records):
            for relative, size, _ in r["files"].values():
                stat = file_stat(folder / relative)
                if stat is None or stat[0] != size:
                    damaged.append(folder / relative)
            path = _first_changed(base, index, r["originals"])
            if path is not None:
                changed.append(path)
        copy = PreparedCopy(folder, manifest)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return None, f"prepared copy {folder} has an unreadable {MANIFEST} ({exc})", "stale"
    if damaged:
        return None, (f"prepared copy {folder} is damaged: {len(damaged)} prepared file(s) missing or of the wrong "
                      f"size; first: {damaged[0]}"), "stale"
    if changed:
        return None, (f"prepared copy {folder} is out of date: {len(changed)} original file(s) changed since it was "
                      f"written; first: {changed[0]}"), "stale"
    bad = f", {len(copy.bad)} unreadable originals recorded" if copy.bad else ""
    return copy, f"prepared copy {folder} ({len(copy)} samples, {copy.format}{bad})", "found"


def find_prepared(base: SegDataset, prepared_dir: str | os.PathLike[str] | None) -> tuple[PreparedCopy | None, str]:
    """The usable prepared copy of ``base`` under ``prepared_dir`` (or None) and a one-line reason.

    Cheap: compares the manifest's identity with ``base``, checks that every prepared
    file exists with its recorded size and that the originals' size and mtime are
    unchanged (``stat`` only; nothing is read).
    """
    copy, reason, _ = _check(base, prepared_dir)
    return copy, reason


def attach_prepared(base: SegDataset, prepared_dir: str | os.PathLike[str] | None, domain: str) -> str:
    """Make ``base`` load from its prepared copy when a usable one exists; the line to print."""
    copy, reason, kind = _check(base, prepared_dir)
    where = f"{domain} {base.name}"
    if copy is not None:
        base.use_prepared(copy)
        return f"{where}: {reason}"
    if kind == "off":
        return f"{where}: reading the original files ({reason})"
    if kind == "none":
        return f"{where}: {reason} (`tufl prepare-data CONFIG` writes one; loading is then several times faster)"
    return f"{where}: {reason}; reading the original files; rerun tufl prepare-data to rebuild it"


__all__ = [
    "FORMATS",
    "JOURNAL",
    "LAYOUT_VERSION",
    "MANIFEST",
    "PNG_COMPRESS_LEVEL",
    "SAMPLES",
    "PrepareResult",
    "PreparedCopy",
    "Record",
    "attach_prepared",
    "copy_folder",
    "copy_identity",
    "decode",
    "decode_bytes",
    "encode",
    "find_prepared",
    "label_mapping_digest",
    "prepare",
    "read_checked",
    "sample_file",
]
