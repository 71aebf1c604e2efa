"""The provenance of a pseudo-label folder: its manifest, written last, and its checks.

``tufl pseudo-label`` ends by writing ``manifest.json`` atomically into the folder::

    {"format": "tufl-pseudo-labels", "version": 1,
     "checkpoint": {"path": "...", "model_sha256": "<hex>"},
     "labeller": {"model": {...}, "target": {...}, "resize": [1024, 512]},
     "samples": 2975,
     "files": {"aachen/aachen_000000_000019_leftImg8bit_pseudo.png": {"bytes": 18822, "crc32": "9a0c1b2d"}, ...}}

``model_sha256`` is the SHA-256 of the labelling model's weights (:func:`model_sha256`),
so two checkpoint files of the same model agree; ``labeller`` is the config that
decides the labels: the model section (without ``pretrained``), the target data
section and the resize the images had. A folder without a manifest was not
completely written: a run was killed, is still writing, or predates manifests.

Stage two (:func:`check_folder`) refuses such a folder, one whose manifest lacks a
sample of the target dataset, or one whose files are missing or have another size
than the manifest says (one ``stat`` per file); each file's CRC-32 is compared as it
is read during training (:func:`verified_bytes`, about 1 ms per MB).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from tufl.data.base import SegDataset
from tufl.objective.temporary_files import remove_temporary_leftovers
from tufl.runtime.atomic import atomic_write_bytes, atomic_write_json, json_safe
from tufl.runtime.errors import BadFileError, FolderLockedError
from tufl.runtime.folder_lock import LOCK_NAME, FolderLock

MANIFEST_NAME = "manifest.json"
FORMAT = "tufl-pseudo-labels"
VERSION = 1
SUFFIXES = ("_pseudo.png", "_conf.png")
RERUN = "run `tufl pseudo-label` again"


class FileEntry(NamedTuple):
    """Size and CRC-32 (8 hex digits) of one file, as the manifest lists it."""

    bytes: int
    crc32: str

    @classmethod
    def of(cls, data: bytes) -> FileEntry:
        return cls(len(data), f"{zlib.crc32(data):08x}")


@dataclass(frozen=True)
class Provenance:
    """Where a folder's pseudo-labels come from: the checkpoint and the labeller's config."""

    checkpoint: str
    model_sha256: str
    labeller: dict[str, Any]

    def differs_from(self, manifest: Mapping[str, Any]) -> str | None:
        """What differs between this source and the one ``manifest`` records (None: the same)."""
        old = manifest.get("checkpoint", {})
        if old.get("model_sha256") != self.model_sha256:
            return (f"written from another checkpoint ({old.get('path', '?')}, model sha256 "
                    f"{str(old.get('model_sha256'))[:12]}...; now {self.checkpoint}, {self.model_sha256[:12]}...)")
        for key, value in self.labeller.items():
            if value != manifest.get("labeller", {}).get(key):
                return f"written with another labeller config ({key} differs)"
        return None


def provenance(checkpoint: str, model: nn.Module, model_section: Any, target_section: Any,
               resize: tuple[int, int] | None) -> Provenance:
    """The :class:`Provenance` of labels predicted by ``model`` (read from ``checkpoint``),
    configured by the ``model`` and ``data.target`` config sections (dataclasses)."""
    model_config = {k: v for k, v in asdict(model_section).items() if k not in ("pretrained", "pretrained_format")}
    labeller = {"model": model_config, "target": asdict(target_section), "resize": resize}
    return Provenance(os.fspath(checkpoint), model_sha256(model), json.loads(json.dumps(json_safe(labeller))))


def model_sha256(model: nn.Module) -> str:
    """SHA-256 of a model's weights and buffers: each entry's name, dtype, shape and bytes,
    in name order (about 0.3 s per 100 M parameters on one core)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}\0{flat.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sample_files(dataset: SegDataset, index: int) -> tuple[str, str]:
    """The pseudo-label and confidence files of sample ``index``, relative to the folder."""
    stem = Path(dataset.sample_name(index)).as_posix().rsplit(".", 1)[0]
    return stem + SUFFIXES[0], stem + SUFFIXES[1]


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest (None when there is none); ``BadFileError`` when it is unusable."""
    path = folder / MANIFEST_NAME
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise BadFileError(path, f"unreadable pseudo-label manifest ({error}); {RERUN}") from None
    files = value.get("files") if isinstance(value, dict) else None
    if (not isinstance(files, dict) or value.get("format") != FORMAT or value.get("version") != VERSION
            or not isinstance(value.get("checkpoint"), dict) or not isinstance(value.get("labeller"), dict)
            or not isinstance(value.get("samples"), int) or value["samples"] * 2 != len(files)):
        raise BadFileError(path, f"not a complete pseudo-label manifest of this tufl ({FORMAT} {VERSION}); {RERUN}")
    try:
        value["files"] = {name: FileEntry(int(e["bytes"]), str(e["crc32"])) for name, e in files.items()}
    except (KeyError, TypeError, ValueError):
        raise BadFileError(path, f"a file entry of the pseudo-label manifest is malformed; {RERUN}") from None
    return value


def write_manifest(folder: Path, provenance: Provenance, files: Mapping[str, FileEntry]) -> Path:
    """Write the manifest of a completely written folder (atomically: the last file written)."""
    return atomic_write_json(folder / MANIFEST_NAME, {
        "format": FORMAT, "version": VERSION,
        "checkpoint": {"path": provenance.checkpoint, "model_sha256": provenance.model_sha256},
        "labeller": provenance.labeller,
        "samples": len(files) // 2,
        "files": {name: entry._asdict() for name, entry in sorted(files.items())},
    })


def write_file(folder: Path, name: str, data: bytes) -> FileEntry:
    """Write one file of the folder atomically; returns its manifest entry."""
    atomic_write_bytes(folder / name, data)
    return FileEntry.of(data)


def check_not_being_written(folder: Path) -> None:
    """``FolderLockedError`` naming the process when another one holds the folder's lock."""
    lock_file = folder / LOCK_NAME
    if not lock_file.is_file():
        return
    import fcntl

    fd = os.open(lock_file, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        holder = FolderLock(folder).holder()
        if error.errno in (errno.EAGAIN, errno.EACCES) and holder.get("pid") != os.getpid():
            by = f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (since {holder.get('since', '?')})"
            raise FolderLockedError(f"{folder}: pseudo-labels are being written by {by}; wait for "
                                    "`tufl pseudo-label` to end") from None
    finally:
        os.close(fd)  # also releases the shared lock


def check_folder(folder: Path, dataset: SegDataset) -> dict[str, FileEntry]:
    """The manifest's entries of ``folder``, after checking that it has a complete manifest
    written at the dataset's resize that lists every sample of ``dataset``, and that each of
    their files exists with the listed size. Raises ``BadFileError`` at the first difference."""
    check_not_being_written(folder)
    manifest = read_manifest(folder)
    path = folder / MANIFEST_NAME
    if manifest is None:
        raise BadFileError(path, "missing: the pseudo-label folder was not completely written (a run of "
                                 "`tufl pseudo-label` was interrupted or predates manifests); " + RERUN)
    resize = manifest.get("labeller", {}).get("resize")
    if (list(dataset.resize) if dataset.resize else None) != resize:
        raise BadFileError(path, f"pseudo-labels of images at resize {resize}, but data.target.resize is "
                                 f"{list(dataset.resize) if dataset.resize else None}; {RERUN} with this config")
    files: dict[str, FileEntry] = manifest["files"]
    for index in range(len(dataset)):
        for name in sample_files(dataset, index):
            if name not in files:
                raise BadFileError(folder / name, f"not in {path}: no pseudo-label of target sample "
                                                  f"{dataset.sample_name(index)} (written for other target data?); "
                                                  f"{RERUN} with this config")
            _check_size(folder / name, files[name], path)
    return files


def _check_size(path: Path, entry: FileEntry, manifest: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BadFileError(path, f"missing, but listed in {manifest}; {RERUN}") from None
    if size != entry.bytes:
        raise BadFileError(path, f"{size} bytes, {manifest} lists {entry.bytes}: the file changed after "
                                 f"`tufl pseudo-label` wrote the folder; {RERUN}")


def verified_bytes(path: Path, entry: FileEntry | None) -> bytes:
    """The bytes of ``path``, checked against its manifest ``entry`` (size and CRC-32) when given."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadFileError(path, "pseudo-label file missing (run `tufl pseudo-label` for this split)") from None
    except OSError as error:
        raise BadFileError(path, f"unreadable pseudo-label file: {error}") from None
    if entry is not None and FileEntry.of(data) != entry:
        found = FileEntry.of(data)
        raise BadFileError(path, f"{found.bytes} bytes, CRC-32 {found.crc32}; the manifest lists {entry.bytes} "
                                 f"bytes, CRC-32 {entry.crc32}: the file changed after `tufl pseudo-label` wrote "
                                 f"the folder; {RERUN}")
    return data


def clear_folder(folder: Path) -> int:
    """Remove the manifest first, then every pseudo-label file under ``folder`` (and the
    subfolders this leaves empty); returns the number of files removed."""
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    old = [p for suffix in SUFFIXES for p in folder.rglob(f"*{suffix}") if p.is_file() or p.is_symlink()]
    for path in old:
        path.unlink(missing_ok=True)
    for parent in sorted({p.parent for p in old}, key=lambda p: len(p.parts), reverse=True):
        while parent != folder and parent.is_relative_to(folder):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
    return len(old)


def start_folder(folder: Path, source: Provenance) -> list[str]:
    """Ready ``folder`` for a new write by ``source`` (hold its lock); returns what was done.

    Leftovers of killed writes go; the manifest always goes first (the folder is
    incomplete until the new one is written); the old pseudo-labels go too when they
    come from another source or have no usable manifest.
    """
    notes: list[str] = []
    manifest = None
    leftovers = remove_temporary_leftovers(folder)
    if leftovers:
        notes.append(f"removed {len(leftovers)} temporary file(s) of an interrupted write from {folder}")
    try:
        manifest = read_manifest(folder)
        reason = source.differs_from(manifest) if manifest else "not completely written (no manifest)"
    except BadFileError as error:
        reason = f"not usable ({error.problem})"
    if manifest is not None and reason is None:
        (folder / MANIFEST_NAME).unlink()
        return notes
    removed = clear_folder(folder)
    if removed:
        notes.append(f"{folder} was {reason}: starting clean, removed its {removed} pseudo-label files")
    return notes
