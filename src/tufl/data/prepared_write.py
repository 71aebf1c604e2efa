"""Writing prepared copies (:mod:`tufl.data.prepared`): resumable, parallel, verified.

:func:`prepare` locks the copy's folder (a second ``prepare`` of it is refused, naming
the holder; the lock ends with the process, however it ends), deletes the temporary
files of killed writes, keeps the files of an earlier (finished or interrupted) run
whose originals are unchanged and whose CRC-32 still matches, rewrites the others in a
process pool, reads every file back, and writes ``manifest.json`` last. Progress is
journaled in ``progress.jsonl`` (one record per finished sample) until then.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from tufl import __version__
from tufl.data.base import SegDataset
from tufl.data.io import BadFileError, DataError
from tufl.data.parallel import worker_pool
from tufl.data.prepared_layout import (
    FORMATS,
    JOURNAL,
    LAYOUT_VERSION,
    MANIFEST,
    SAMPLES,
    Record,
    copy_folder,
    copy_identity,
    encode,
    file_stat,
    original_stats,
    read_manifest,
    sample_file,
)
from tufl.runtime.atomic import atomic_write_text
from tufl.runtime.folder_lock import FolderLock
from tufl.runtime.progress import progress_bar

_CHUNK = 8  # samples per pool task (progress is journaled per finished task)


def _crc(path: Path) -> int:
    return zlib.crc32(path.read_bytes())


def _write_file(path: Path, data: bytes) -> None:
    """Write under a temporary name and rename: an interruption never leaves a partial file
    under the final name (durability comes from ``os.sync`` before the manifest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}") from error


@dataclass
class PrepareResult:
    """What :func:`prepare` did."""

    folder: Path
    format: str
    samples: int
    written: int  # samples whose files were (re)written
    reused: int  # samples whose files were kept (checksum verified)
    total_bytes: int
    seconds: float
    bad: list[tuple[str, str]] = field(default_factory=list)  # unreadable originals: (file, problem)


class _SampleWriter:
    """Picklable pool task: write (or keep) the prepared files of some samples."""

    def __init__(self, base: SegDataset, folder: Path, fmt: str) -> None:
        self.base, self.folder, self.fmt = base, folder, fmt

    def __call__(self, items: list[tuple[int, Record | None]]) -> list[tuple[Record, bool]]:
        return [self.one(index, old) for index, old in items]

    def _reusable(self, index: int, old: Record, originals: dict[str, Any]) -> bool:
        if old.get("bad") is not None or old.get("originals") != originals:
            return False
        s = self.base.samples[index]
        expected = {"image"} | ({"label"} if s.label is not None else set())
        if old.get("name") != s.name or set(old["files"]) != expected:
            return False
        for part, (relative, size, crc) in old["files"].items():
            path = self.folder / relative
            stat = file_stat(path)
            if relative != sample_file(index, part, self.fmt) or stat is None or stat[0] != size or _crc(path) != crc:
                return False
        return True

    def one(self, index: int, old: Record | None) -> tuple[Record, bool]:
        originals = original_stats(self.base, index)  # stat before reading: a later change shows as stale
        try:
            if old is not None and self._reusable(index, old, originals):
                return old, False
        except (OSError, KeyError, TypeError, ValueError):
            pass
        record: Record = {"index": index, "name": self.base.samples[index].name, "originals": originals,
                          "files": {}, "shape": None, "bad": None}
        try:
            image, label = self.base._load_original(index)
        except BadFileError as exc:
            record["bad"] = [exc.path, exc.problem]
            return record, True
        record["shape"] = [int(image.shape[0]), int(image.shape[1])]
        for part, array in (("image", image), ("label", label)):
            if array is None:
                continue
            data = encode(array, self.fmt)
            relative = sample_file(index, part, self.fmt)
            _write_file(self.folder / relative, data)
            record["files"][part] = [relative, len(data), zlib.crc32(data)]
        return record, True


class _Verifier:
    """Picklable pool task: re-read prepared files and compare their CRC-32."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, records: list[Record]) -> list[str]:
        problems = []
        for r in records:
            for relative, size, crc in r["files"].values():
                path = self.folder / relative
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    problems.append(f"{path}: cannot be read back ({exc})")
                    continue
                if len(data) != size or zlib.crc32(data) != crc:
                    problems.append(f"{path}: reads back different from what was written (disk problem?)")
        return problems


def _pool_map(fn: Callable[[Any], Any], chunks: list[Any], workers: int) -> Iterator[Any]:
    if workers <= 1 or len(chunks) <= 1:
        yield from map(fn, chunks)
        return
    with worker_pool(min(workers, len(chunks))) as pool:
        yield from pool.imap_unordered(fn, chunks)


def _chunks(items: list[Any], size: int | None = None) -> list[list[Any]]:
    size = size or _CHUNK
    return [items[k:k + size] for k in range(0, len(items), size)]


def _json_lines(path: Path) -> Iterable[Any]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut short by an interruption
            continue
    return out


def _previous_records(folder: Path, identity: dict[str, Any]) -> dict[int, Record]:
    """Records of an earlier (complete or interrupted) prepare of the same identity."""
    records: dict[int, Record] = {}
    try:
        manifest = read_manifest(folder)
        if manifest.get("identity") == identity:
            records.update((int(r["index"]), r) for r in manifest["records"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    lines = list(_json_lines(folder / JOURNAL))
    if lines and isinstance(lines[0], dict) and lines[0].get("identity") == identity:
        for r in lines[1:]:
            if isinstance(r, dict) and isinstance(r.get("index"), int):
                records[r["index"]] = r
    return records


def _remove_strays(folder: Path, records: list[Record]) -> None:
    """Delete files under ``samples/`` that the manifest does not name (another format, temporaries)."""
    keep = {os.path.normpath(folder / f[0]) for r in records for f in r["files"].values()}
    for path in (folder / SAMPLES).rglob("*"):
        if path.is_file() and os.path.normpath(path) not in keep:
            path.unlink(missing_ok=True)


def _check_free_space(base: SegDataset, folder: Path, fmt: str, old: dict[int, Record]) -> None:
    """Refuse to start when an ``npy`` copy at a known size cannot fit on the disk."""
    if fmt != "npy" or base.resize is None:
        return  # png sizes depend on the content; native sizes on each file
    width, height = base.resize
    per_sample = width * height * (4 if base.has_labels else 3) + 2 * 128  # pixels + npy headers
    kept = sum(f[1] for r in old.values() for f in r.get("files", {}).values())
    need = max(0, per_sample * len(base) - kept)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DataError(f"{folder}: the npy copy of {len(base)} {base.name} samples at {width}x{height} needs "
                        f"about {need / 2**30:.1f} GiB more, but only {free / 2**30:.1f} GiB are free there; "
                        "free space, set data.prepared_dir to another disk, or use --format png (about half)")


def prepare(base: SegDataset, prepared_dir: str | os.PathLike[str], fmt: str = "npy", workers: int | None = None,
            progress: bool = True) -> PrepareResult:
    """Write (or complete, or repair) the prepared copy of ``base`` under ``prepared_dir``.

    Resumable: files of an earlier run whose originals are unchanged and whose CRC-32
    matches are kept; the others are rewritten. Every file is read back and checked
    before ``manifest.json`` is written. Unreadable originals are recorded as bad (the
    copy then raises their :class:`BadFileError`, for the training's skip policy).
    Raises :class:`~tufl.runtime.errors.FolderLockedError` while another process writes
    the same copy.
    """
    if fmt not in FORMATS:
        raise ValueError(f"prepared copy format must be one of {FORMATS}, got {fmt!r}")
    start = time.perf_counter()
    workers = (os.cpu_count() or 1) if workers is None else workers
    folder = copy_folder(base, prepared_dir)
    with FolderLock(folder, "prepared copy"):
        _remove_temporaries(folder)
        return _prepare_locked(base, folder, fmt, workers, progress, start)


def _remove_temporaries(folder: Path) -> None:
    """Delete what killed writes left (``.NAME.*.tmp`` beside the manifest and the sample files);
    the folder is locked, so no live writer owns them."""
    for path in [*folder.glob(".*.tmp"), *(folder / SAMPLES).rglob(".*.tmp")]:
        if path.is_file():
            path.unlink(missing_ok=True)


def _prepare_locked(base: SegDataset, folder: Path, fmt: str, workers: int, progress: bool,
                    start: float) -> PrepareResult:
    """:func:`prepare` in its locked folder."""
    identity = copy_identity(base)
    old = _previous_records(folder, identity)
    _check_free_space(base, folder, fmt, old)
    _start_journal(folder, identity, old)
    ordered, written = _write_samples(base, folder, fmt, old, workers, progress)
    _verify(folder, ordered, workers)
    bad = [(r["bad"][0], r["bad"][1]) for r in ordered if r["bad"] is not None]
    total = sum(f[1] for r in ordered for f in r["files"].values())
    _write_manifest(folder, identity, fmt, ordered, len(bad), total)
    (folder / JOURNAL).unlink(missing_ok=True)
    _remove_strays(folder, ordered)
    return PrepareResult(folder, fmt, len(ordered), written, len(ordered) - written, total,
                         time.perf_counter() - start, bad)


def _start_journal(folder: Path, identity: dict[str, Any], old: dict[int, Record]) -> None:
    """Carry the earlier records over into a new journal, and drop the manifest before any file changes."""
    journal = [json.dumps({"identity": identity})] + [json.dumps(r) for r in old.values()]
    atomic_write_text(folder / JOURNAL, "\n".join(journal) + "\n")
    (folder / MANIFEST).unlink(missing_ok=True)


def _write_samples(base: SegDataset, folder: Path, fmt: str, old: dict[int, Record], workers: int,
                   progress: bool) -> tuple[list[Record], int]:
    """Write (or keep) every sample's files, journaling each fresh record; ``(records in order, written)``."""
    records: dict[int, Record] = {}
    written = 0
    writer = _SampleWriter(base, folder, fmt)
    chunks = _chunks([(i, old.get(i)) for i in range(len(base))])
    with open(folder / JOURNAL, "a", encoding="utf-8") as log, \
            progress_bar(total=len(base), desc=f"prepare {base.name}", unit="sample", disable=not progress) as bar:
        for results in _pool_map(writer, chunks, workers):
            for record, fresh in results:
                records[record["index"]] = record
                if fresh:
                    written += 1
                    log.write(json.dumps(record) + "\n")
            log.flush()
            bar.update(len(results))
    return [records[i] for i in range(len(base))], written


def _verify(folder: Path, records: list[Record], workers: int) -> None:
    """Read every prepared file back; DataError naming the first that differs from its record."""
    problems = [p for part in _pool_map(_Verifier(folder), _chunks(records, 64), workers) for p in part]
    if problems:
        raise DataError(f"prepared copy {folder}: {len(problems)} file(s) failed verification; first: {problems[0]}")


def _write_manifest(folder: Path, identity: dict[str, Any], fmt: str, records: list[Record], bad: int,
                    total: int) -> None:
    """Write ``manifest.json`` (one line per record), once every sample file is on the disk."""
    manifest = {
        "layout_version": LAYOUT_VERSION,
        "tufl_version": __version__,
        "identity": identity,
        "format": fmt,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "samples": len(records),
        "bad_samples": bad,
        "files": sum(len(r["files"]) for r in records),
        "total_bytes": total,
        "records": records,
    }
    if hasattr(os, "sync"):
        os.sync()  # every sample file on the disk before the manifest says the copy is complete
    body = json.dumps({k: v for k, v in manifest.items() if k != "records"}, indent=1)[:-2]
    rows = ",\n".join(json.dumps(r, separators=(",", ":")) for r in records)
    atomic_write_text(folder / MANIFEST, f'{body},\n "records": [\n{rows}\n]\n}}\n')
