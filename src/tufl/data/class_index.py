"""Which source images contain each class, and how many pixels of it, cached on disk.

Long-tail class pasting uses the images of each class; rare-class sampling
(:mod:`tufl.data.rare_class`) also the class's pixel count in each image. The index
is built once by scanning every label (after the dataset's resize) in a process
pool, then stored as JSON in a cache folder under a name that includes a
fingerprint of the dataset name, label file list, class count and resize. A
changed file list gives a new fingerprint, hence a rebuild; a cache of an older
format version (version 1 had no per-image pixel counts) is rebuilt too.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tufl.data.base import SegDataset
from tufl.runtime.atomic import atomic_write_text
from tufl.data.io import BadFileError
from tufl.data.parallel import map_index_chunks

_FORMAT_VERSION = 2  # 2: per-image pixel counts of each class (``image_pixels``)


def dataset_fingerprint(dataset: SegDataset) -> str:
    """Hex digest of what the index depends on: name, label files, class count, resize."""
    root = dataset.root
    labels = [
        os.path.relpath(path, root) if path is not None else ""
        for path in (dataset.label_path(i) for i in range(len(dataset)))
    ]
    payload = json.dumps(
        {
            "dataset": dataset.name,
            "num_classes": dataset.num_classes,
            "resize": dataset.resize,
            "labels": labels,
            # A class definition file changes the train ids (absent for the official class sets).
            **({"classes": repr(dataset.class_set)} if getattr(dataset, "class_set", None) else {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _class_pixels(dataset: SegDataset, indices: range) -> list[list[int] | None]:
    """Per image of ``indices``: pixel count of each class (None for a skipped bad file)."""
    out: list[list[int] | None] = []
    for i in indices:
        try:
            label = dataset.read_label(i)
        except BadFileError:
            if not dataset.skip_bad_files:
                raise
            out.append(None)
            continue
        assert label is not None
        counts = np.bincount(label.ravel(), minlength=256)[: dataset.num_classes]
        out.append(counts.tolist())
    return out


class _ScanChunk:
    """Picklable callable for the pool: scans one chunk of a dataset."""

    def __init__(self, dataset: SegDataset) -> None:
        self.dataset = dataset

    def __call__(self, indices: range) -> list[list[int] | None]:
        return _class_pixels(self.dataset, indices)


@dataclass(frozen=True)
class ClassIndex:
    """Image indices containing each class, their pixel counts of it, and per-class pixel totals.

    ``images[c]`` lists the images with at least one pixel of class ``c`` (ascending);
    ``image_pixels[c][k]`` is the pixel count of ``c`` in image ``images[c][k]``.
    """

    num_classes: int
    images: tuple[tuple[int, ...], ...]
    image_pixels: tuple[tuple[int, ...], ...]
    pixel_counts: tuple[int, ...]
    fingerprint: str

    def _check_class(self, c: int) -> None:
        if not 0 <= c < self.num_classes:
            raise IndexError(f"class {c} out of range (0..{self.num_classes - 1})")

    def images_with(self, c: int, min_pixels: int = 1) -> list[int]:
        """Indices of the images in which class ``c`` has at least ``min_pixels`` pixels."""
        self._check_class(c)
        if min_pixels <= 1:
            return list(self.images[c])
        return [i for i, n in zip(self.images[c], self.image_pixels[c]) if n >= min_pixels]

    def pixels_in_images(self, c: int) -> list[int]:
        """Pixel count of class ``c`` in each image of :meth:`images_with` ``(c)``, in that order."""
        self._check_class(c)
        return list(self.image_pixels[c])

    @classmethod
    def build(cls, dataset: SegDataset, num_workers: int = 0, progress: bool = True) -> ClassIndex:
        """Scan every label of ``dataset`` (``num_workers`` > 1 uses a process pool)."""
        if not dataset.has_labels:
            raise ValueError(f"{dataset.name}: a class index needs labels, but the dataset has none")
        images: list[list[int]] = [[] for _ in range(dataset.num_classes)]
        pixels: list[list[int]] = [[] for _ in range(dataset.num_classes)]
        totals = np.zeros(dataset.num_classes, dtype=np.int64)
        desc = f"class index ({dataset.name})"
        scan = map_index_chunks(_ScanChunk(dataset), len(dataset), num_workers, desc, progress)
        for i, counts in enumerate(scan):
            if counts is None:
                continue
            totals += np.asarray(counts, dtype=np.int64)
            for c in np.flatnonzero(counts):
                images[c].append(i)
                pixels[c].append(int(counts[c]))
        return cls(
            dataset.num_classes,
            tuple(tuple(lst) for lst in images),
            tuple(tuple(lst) for lst in pixels),
            tuple(int(t) for t in totals),
            dataset_fingerprint(dataset),
        )

    @classmethod
    def build_or_load(
        cls, dataset: SegDataset, cache_dir: str | os.PathLike[str], num_workers: int = 0, progress: bool = True
    ) -> ClassIndex:
        """The cached index of ``dataset`` if its fingerprint matches, else a fresh (cached) one."""
        fingerprint = dataset_fingerprint(dataset)
        path = Path(cache_dir) / f"class_index_{dataset.name}_{fingerprint[:16]}.json"
        if path.is_file():
            try:
                cached = cls.from_json(path)
            except BadFileError as exc:
                warnings.warn(f"{exc}; rebuilding it", stacklevel=2)
            else:
                if cached.fingerprint == fingerprint:
                    return cached
        index = cls.build(dataset, num_workers, progress)
        atomic_write_text(path, index.to_json())
        return index

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": _FORMAT_VERSION,
                "fingerprint": self.fingerprint,
                "num_classes": self.num_classes,
                "pixel_counts": list(self.pixel_counts),
                "images": [list(lst) for lst in self.images],
                "image_pixels": [list(lst) for lst in self.image_pixels],
            }
        )

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> ClassIndex:
        """Read a cached index; a malformed file raises BadFileError naming it."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data["version"] != _FORMAT_VERSION:
                raise ValueError(f"format version {data['version']}, expected {_FORMAT_VERSION}")
            num_classes = int(data["num_classes"])
            images = tuple(tuple(int(i) for i in lst) for lst in data["images"])
            pixels = tuple(tuple(int(n) for n in lst) for lst in data["image_pixels"])
            counts = tuple(int(c) for c in data["pixel_counts"])
            if len(images) != num_classes or len(pixels) != num_classes or len(counts) != num_classes:
                raise ValueError("per-class lists do not match num_classes")
            if any(len(a) != len(b) for a, b in zip(images, pixels)):
                raise ValueError("per-image pixel counts do not match the image lists")
            return cls(num_classes, images, pixels, counts, str(data["fingerprint"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadFileError(path, f"not a valid class index cache ({exc})") from None
