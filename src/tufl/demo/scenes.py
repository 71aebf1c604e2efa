"""Built-in demo data: a GTA5-like source and a Cityscapes-like target, written to disk.

:func:`generate_demo_data` draws procedural street scenes (see
:mod:`tufl.demo.render`) for a *synthetic* source domain and a *realistic*
target domain and writes them in the official on-disk layouts, so the demo runs
through the real dataset loaders::

    root/gta5_like/images/00001.png            RGB
    root/gta5_like/labels/00001.png            palette PNG of Cityscapes label ids
    root/cityscapes_like/leftImg8bit/{train,val}/{city}/{city}_{seq:06d}_000019_leftImg8bit.png
    root/cityscapes_like/gtFine/{train,val}/{city}/{city}_{seq:06d}_000019_gtFine_labelIds.png
    root/demo_data.json                        manifest: settings, version, class fractions

Every sample is seeded from ``(seed, split, index)``, so the files do not depend
on the number of worker processes. The data are generated in a temporary folder
and moved into place before the manifest is written; a dataset without a
manifest is incomplete, which :func:`ensure_demo_data` treats as absent.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
from PIL import Image

from tufl.data.labels import CITYSCAPES_19
from tufl.demo.render import Domain, render_scene

GENERATOR_VERSION = 1
SOURCE_DIR = "gta5_like"
TARGET_DIR = "cityscapes_like"
MANIFEST_NAME = "demo_data.json"
TRAIN_CITIES = ("northfield", "eastbrook")
VAL_CITIES = ("southport",)
MIN_SIZE = (32, 16)

Split = Literal["source", "target_train", "target_val"]
SPLITS: tuple[Split, ...] = ("source", "target_train", "target_val")
_SPLIT_CODE = {"source": 0, "target_train": 1, "target_val": 2}
_SPLIT_DOMAIN: dict[str, Domain] = {
    "source": "synthetic", "target_train": "realistic", "target_val": "realistic",
}


@dataclass(frozen=True)
class DemoDataInfo:
    """A generated demo dataset: where it is, how it was made, what it contains.

    ``size`` is ``(width, height)``; ``class_fractions[split][class name]`` is the
    fraction of all pixels of the split with that class (the rest is ignored).
    """

    root: Path
    seed: int
    size: tuple[int, int]
    n_source: int
    n_target_train: int
    n_target_val: int
    generator_version: int
    class_fractions: Mapping[str, Mapping[str, float]]

    @property
    def source_root(self) -> Path:
        """Root of the GTA5-layout source dataset."""
        return self.root / SOURCE_DIR

    @property
    def target_root(self) -> Path:
        """Root of the Cityscapes-layout target dataset."""
        return self.root / TARGET_DIR

    def count(self, split: Split) -> int:
        """Number of samples in ``split``."""
        counts = {"source": self.n_source, "target_train": self.n_target_train,
                  "target_val": self.n_target_val}
        if split not in counts:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return counts[split]


def sample_paths(split: Split, count: int) -> list[tuple[str, str]]:
    """Relative ``(image, label)`` paths of the ``count`` samples of ``split``.

    Source paths are relative to the source root, target paths to the target root.
    """
    if split == "source":
        return [(f"images/{i:05d}.png", f"labels/{i:05d}.png") for i in range(1, count + 1)]
    if split not in ("target_train", "target_val"):
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    folder, cities = ("train", TRAIN_CITIES) if split == "target_train" else ("val", VAL_CITIES)
    paths = []
    for i in range(count):
        city = cities[i % len(cities)]
        stem = f"{city}_{i // len(cities):06d}_000019"
        paths.append((f"leftImg8bit/{folder}/{city}/{stem}_leftImg8bit.png",
                      f"gtFine/{folder}/{city}/{stem}_gtFine_labelIds.png"))
    return paths


def split_files(info: DemoDataInfo, split: Split) -> list[tuple[Path, Path]]:
    """Absolute ``(image, label)`` paths of the samples of a generated ``split``."""
    base = info.source_root if split == "source" else info.target_root
    return [(base / image, base / label) for image, label in sample_paths(split, info.count(split))]


def class_frequencies(info: DemoDataInfo, split: Split) -> dict[str, float]:
    """Fraction of the pixels of ``split`` per class name, read from its label files."""
    counts = np.zeros(256, dtype=np.int64)
    for _, label_path in split_files(info, split):
        with Image.open(label_path) as label:
            counts += _label_counts(np.asarray(label))
    return _fractions(counts)


def generate_demo_data(root: Path | str, seed: int = 0, size: tuple[int, int] = (256, 128),
                       n_source: int = 300, n_target_train: int = 300, n_target_val: int = 60,
                       workers: int = 2) -> DemoDataInfo:
    """Generate the demo dataset under ``root``, replacing a previous one.

    ``size`` is ``(width, height)`` of every image. The result is byte-identical
    for the same settings whatever ``workers`` is. With ``workers > 1`` samples
    are drawn in spawned processes (a calling script needs the usual
    ``if __name__ == "__main__":`` guard).
    """
    _check_settings(seed, size, n_source, n_target_train, n_target_val, workers)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    counts = {"source": n_source, "target_train": n_target_train, "target_val": n_target_val}
    tmp = Path(tempfile.mkdtemp(prefix=".demo-data-", dir=root))
    try:
        jobs = [(split, index, image, label) for split in SPLITS
                for index, (image, label) in enumerate(sample_paths(split, counts[split]))]
        work = partial(_write_sample, str(tmp), seed, (int(size[0]), int(size[1])))
        results = _run(work, jobs, workers)
        pixel_counts = {split: np.zeros(256, dtype=np.int64) for split in SPLITS}
        for (split, *_), hist in zip(jobs, results):
            pixel_counts[split] += hist
        info = DemoDataInfo(root, seed, (int(size[0]), int(size[1])), n_source, n_target_train,
                            n_target_val, GENERATOR_VERSION,
                            {split: _fractions(pixel_counts[split]) for split in SPLITS})
        _publish(tmp, info)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def load_demo_data_info(root: Path | str) -> DemoDataInfo | None:
    """The manifest of the demo dataset under ``root``; None if there is none (or it is incomplete)."""
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        info = DemoDataInfo(
            root=root, seed=int(raw["seed"]), size=(int(raw["size"][0]), int(raw["size"][1])),
            n_source=int(raw["n_source"]), n_target_train=int(raw["n_target_train"]),
            n_target_val=int(raw["n_target_val"]), generator_version=int(raw["generator_version"]),
            class_fractions={split: {name: float(v) for name, v in raw["class_fractions"][split].items()}
                             for split in SPLITS},
        )
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise ValueError(f"{path}: malformed demo-data manifest ({err!r})") from err
    if not (info.source_root.is_dir() and info.target_root.is_dir()):
        return None
    return info


def ensure_demo_data(root: Path | str, seed: int = 0, size: tuple[int, int] = (256, 128),
                     n_source: int = 300, n_target_train: int = 300, n_target_val: int = 60,
                     workers: int = 2) -> DemoDataInfo:
    """The demo dataset under ``root`` with these settings, generated only if not there yet.

    A dataset made with other settings, by another generator version, or left
    incomplete or with an unreadable manifest is regenerated.
    """
    _check_settings(seed, size, n_source, n_target_train, n_target_val, workers)
    try:
        info = load_demo_data_info(root)
    except ValueError:
        info = None
    wanted = (seed, (int(size[0]), int(size[1])), n_source, n_target_train, n_target_val,
              GENERATOR_VERSION)
    if info is not None and (info.seed, info.size, info.n_source, info.n_target_train,
                             info.n_target_val, info.generator_version) == wanted:
        return info
    return generate_demo_data(root, seed, size, n_source, n_target_train, n_target_val, workers)


# --------------------------------------------------------------------------- internals


def _check_settings(seed: int, size: tuple[int, int], n_source: int, n_target_train: int,
                    n_target_val: int, workers: int) -> None:
    problems = []
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        problems.append(f"seed must be a non-negative integer, got {seed!r}")
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or any(not isinstance(s, (int, np.integer)) for s in size)
            or size[0] < MIN_SIZE[0] or size[1] < MIN_SIZE[1]):
        problems.append(f"size must be (width, height) integers of at least {MIN_SIZE}, got {size!r}")
    for name, value in (("n_source", n_source), ("n_target_train", n_target_train),
                        ("n_target_val", n_target_val)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            problems.append(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        problems.append(f"workers must be a positive integer, got {workers!r}")
    if problems:
        raise ValueError("invalid demo-data settings: " + "; ".join(problems))


def _label_counts(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels.ravel(), minlength=256).astype(np.int64)


def _fractions(counts: np.ndarray) -> dict[str, float]:
    total = max(int(counts.sum()), 1)
    return {name: float(counts[label_id]) / total for name, label_id, _ in CITYSCAPES_19}


def _cityscapes_palette() -> list[int]:
    table = np.zeros((256, 3), dtype=np.uint8)
    for _, label_id, rgb in CITYSCAPES_19:
        table[label_id] = rgb
    return table.ravel().tolist()


def _write_sample(tmp_root: str, seed: int, size: tuple[int, int],
                  job: tuple[str, int, str, str]) -> np.ndarray:
    """Render one sample into ``tmp_root``; returns its label-id pixel counts."""
    split, index, image_rel, label_rel = job
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODE[split], index]))
    image, labels = render_scene(_SPLIT_DOMAIN[split], size, rng)
    base = Path(tmp_root) / (SOURCE_DIR if split == "source" else TARGET_DIR)
    image_path, label_path = base / image_rel, base / label_rel
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(image_path, format="PNG")
    label_image = Image.fromarray(labels)  # mode "L": Cityscapes labelIds
    if split == "source":
        label_image.putpalette(_cityscapes_palette())  # mode "P", as GTA5 labels
    label_image.save(label_path, format="PNG")
    return _label_counts(labels)


def _run(work: Callable[[tuple[str, int, str, str]], np.ndarray],
         jobs: Sequence[tuple[str, int, str, str]], workers: int) -> list[np.ndarray]:
    if workers == 1 or len(jobs) < 2:
        return [work(job) for job in jobs]
    n = min(workers, len(jobs))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=context) as pool:
        return list(pool.map(work, jobs, chunksize=max(1, len(jobs) // (8 * n))))


def _publish(tmp: Path, info: DemoDataInfo) -> None:
    """Move the generated folders from ``tmp`` into ``info.root``, then write the manifest."""
    root = info.root
    manifest = root / MANIFEST_NAME
    manifest.unlink(missing_ok=True)  # from here on, the dataset reads as incomplete
    trash = Path(tempfile.mkdtemp(prefix=".demo-data-old-", dir=root))
    try:
        for name in (SOURCE_DIR, TARGET_DIR):
            if (root / name).exists():
                os.replace(root / name, trash / name)
            os.replace(tmp / name, root / name)
        payload = {
            "generator": "tufl.demo.scenes",
            "generator_version": info.generator_version,
            "seed": info.seed,
            "size": list(info.size),
            "n_source": info.n_source,
            "n_target_train": info.n_target_train,
            "n_target_val": info.n_target_val,
            "source_dir": SOURCE_DIR,
            "target_dir": TARGET_DIR,
            "class_fractions": info.class_fractions,
        }
        tmp_manifest = root / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
        try:
            tmp_manifest.write_text(json.dumps(payload, indent=2), encoding="utf-8")
            os.replace(tmp_manifest, manifest)
        finally:
            tmp_manifest.unlink(missing_ok=True)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
