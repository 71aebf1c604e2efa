"""Images per second of the data pipelines, on generated files at the standard sizes.

Pipelines measured (batch of 2, like the DeepLabV2 protocol):

* GTA5-like source: 1914x1052 PNGs resized to 1280x720, random 512x512 crop, flip;
* SYNTHIA-like source: 1280x760 PNGs (16-bit labels), random 512x512 crop, flip;
* Cityscapes-like target pair: 2048x1024 PNGs resized to 1024x512, random 512x512
  weak view and the strong view (photometric T + affine A).

The generated images are smooth random fields plus noise, so that their PNG
decoding cost is closer to photographs than pure noise would be. Run it with
``tufl benchmark data [--out-dir DIR] [--workers 0 2] ...``.

Variants of each pipeline, side by side (``--variants``):

* ``original``: the original files, every view built on the workers (the pipeline
  before issue 20);
* ``prepared``: a prepared copy (``npy``, :mod:`tufl.data.prepared`) written first,
  and for the target pair only the workers' part (weak view and the strong view's
  draws); the strong view's device part (:func:`tufl.data.device_views.finish_target_batch`)
  is timed separately per batch on ``--device``.

Rates are also given per core: workers 0 is one core, ``w`` workers ``w`` cores.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from tufl.bench.tables import markdown_table
from tufl.data.io import Size
from tufl.data.loader import InfiniteLoader
from tufl.data.registry import build_dataset
from tufl.data.samples import SourceSamples, TargetPairs
from tufl.data.transforms import SourceAugConfig
from tufl.data.views import TargetViewConfig

VARIANTS = ("original", "prepared")
VARIANT_NAMES = {"original": "original files, worker views", "prepared": "prepared copy (npy), worker part only"}
PREPARED_FORMAT = "npy"


@dataclass(frozen=True)
class PipelineSpec:
    """One measured pipeline: generated file size, dataset resize, crop, and kind."""

    name: str
    dataset: Literal["gta5", "synthia", "cityscapes"]
    file_size: Size
    resize: Size | None
    crop: Size
    kind: Literal["source", "target"]


STANDARD_PIPELINES = (
    PipelineSpec(
        "gta5 source 1914x1052->1280x720, crop 512", "gta5", (1914, 1052), (1280, 720), (512, 512), "source"
    ),
    PipelineSpec("synthia source 1280x760, crop 512", "synthia", (1280, 760), None, (512, 512), "source"),
    PipelineSpec(
        "cityscapes target pair 2048x1024->1024x512, crop 512", "cityscapes", (2048, 1024), (1024, 512),
        (512, 512), "target",
    ),
)


@dataclass(frozen=True)
class ThroughputResult:
    """Measured rate of one pipeline with one worker count."""

    pipeline: str
    num_workers: int
    batch_size: int
    batches: int
    seconds: float
    variant: str = "original"
    # target pair, prepared variant: seconds per batch of the strong view's device part
    device_seconds_per_batch: float | None = None
    device: str | None = None

    @property
    def images_per_second(self) -> float:
        return self.batch_size * self.batches / self.seconds

    @property
    def images_per_second_per_core(self) -> float:
        """Rate per core of the loader: workers 0 runs on one core, ``w`` workers on ``w``."""
        return self.images_per_second / max(1, self.num_workers)


def _smooth_image(rng: np.random.Generator, size: Size) -> np.ndarray:
    width, height = size
    coarse = rng.integers(0, 256, (max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    noisy = smooth + rng.normal(0.0, 3.0, smooth.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _blocky_labels(rng: np.random.Generator, size: Size, values: Sequence[int]) -> np.ndarray:
    width, height = size
    coarse = rng.choice(np.asarray(values, dtype=np.uint8), (max(2, height // 64), max(2, width // 64)))
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.NEAREST))


def write_synthetic(spec: PipelineSpec, root: Path, num_images: int, seed: int = 0) -> None:
    """Write ``num_images`` generated samples of ``spec.dataset`` in its official layout."""
    rng = np.random.default_rng(seed)
    ids = list(range(34)) if spec.dataset != "synthia" else list(range(23))
    for k in range(num_images):
        image = Image.fromarray(_smooth_image(rng, spec.file_size))
        label = _blocky_labels(rng, spec.file_size, ids)
        if spec.dataset == "gta5":
            (root / "images").mkdir(parents=True, exist_ok=True)
            (root / "labels").mkdir(parents=True, exist_ok=True)
            image.save(root / "images" / f"{k + 1:05d}.png")
            palette_label = Image.fromarray(label)
            palette_label.putpalette([c for i in range(256) for c in (i, (37 * i) % 256, 255 - i)])
            palette_label.save(root / "labels" / f"{k + 1:05d}.png")
        elif spec.dataset == "synthia":
            import cv2

            (root / "RGB").mkdir(parents=True, exist_ok=True)
            (root / "GT" / "LABELS").mkdir(parents=True, exist_ok=True)
            image.save(root / "RGB" / f"{k:07d}.png")
            instance = rng.integers(0, 5000, label.shape, dtype=np.uint16)
            rgb16 = np.stack([label.astype(np.uint16), instance, np.zeros_like(instance)], axis=2)
            cv2.imwrite(str(root / "GT" / "LABELS" / f"{k:07d}.png"), rgb16[:, :, ::-1])
        else:
            city = root / "leftImg8bit" / "train" / "synthcity"
            city.mkdir(parents=True, exist_ok=True)
            image.save(city / f"synthcity_{k:06d}_000019_leftImg8bit.png")


def _make_samples(spec: PipelineSpec, root: Path, variant: str = "original",
                  prepared_dir: Path | None = None) -> Dataset:
    """The pipeline's torch dataset; ``prepared``: over its prepared copy under ``prepared_dir``
    (written first when absent), target pairs leaving the strong view to the device."""
    num_classes = 16 if spec.dataset == "synthia" else 19
    base = build_dataset(spec.dataset, str(root), "train", num_classes, resize=spec.resize)
    if variant == "prepared":
        from tufl.data.prepared import find_prepared, prepare

        assert prepared_dir is not None
        copy, reason = find_prepared(base, prepared_dir)
        if copy is None:
            prepare(base, prepared_dir, PREPARED_FORMAT, workers=1, progress=False)
            copy, reason = find_prepared(base, prepared_dir)
        if copy is None:
            raise RuntimeError(f"prepared copy of {spec.name} not usable: {reason}")
        base.use_prepared(copy)
    elif variant != "original":
        raise ValueError(f"unknown pipeline variant {variant!r}; expected one of {VARIANTS}")
    if spec.kind == "source":
        return SourceSamples(base, SourceAugConfig(crop_size=spec.crop))
    views = TargetViewConfig(crop_size=spec.crop)
    if variant == "prepared":
        return TargetPairs(base, views, strong_view="device")
    return TargetPairs(base, views)


def time_device_views(batches: Sequence[dict], cfg: TargetViewConfig, device: str, repeats: int = 3) -> float:
    """Median seconds per batch of the strong view's device part (weak view copied to
    ``device`` first, not timed) over ``batches`` of the prepared target pipeline."""
    from tufl.data.device_views import finish_target_batch

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda *_: None)
    times = []
    for _ in range(repeats):
        for batch in batches:
            on_device = {**batch, "weak": batch["weak"].to(dev), "theta": batch["theta"].to(dev)}
            sync(dev)
            start = time.perf_counter()
            finish_target_batch(on_device, cfg)
            sync(dev)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def shrink(spec: PipelineSpec, divisor: int) -> PipelineSpec:
    """``spec`` with every size divided by ``divisor`` (at least 8 pixels; smoke runs)."""
    def div(size: Size | None) -> Size | None:
        return None if size is None else (max(8, size[0] // divisor), max(8, size[1] // divisor))

    return PipelineSpec(spec.name, spec.dataset, div(spec.file_size), div(spec.resize), div(spec.crop), spec.kind)


def measure_throughput(
    work_dir: str | Path,
    num_images: int = 8,
    batches: int = 20,
    batch_size: int = 2,
    workers: Sequence[int] = (0, 2),
    size_divisor: int = 1,
    seed: int = 0,
    pipelines: Sequence[PipelineSpec] = STANDARD_PIPELINES,
    variants: Sequence[str] = ("original",),
    device: str = "cpu",
) -> list[ThroughputResult]:
    """Generate each pipeline's data under ``work_dir`` and time ``batches`` batches per
    variant (:data:`VARIANTS`) and worker count.

    The first batch of each run (worker start-up) is not timed. ``size_divisor``
    shrinks every size (for quick smoke runs). SYNTHIA is skipped without OpenCV. The
    prepared copies go to ``work_dir/prepared``; the target pair's device part of the
    ``prepared`` variant is timed on ``device`` over the batches of the first worker count.
    """
    results = []
    for spec in pipelines:
        spec = shrink(spec, size_divisor) if size_divisor > 1 else spec
        if spec.dataset == "synthia" and importlib.util.find_spec("cv2") is None:
            print(f"skipping {spec.name}: OpenCV (tufl[synthia]) is not installed", file=sys.stderr)
            continue
        root = Path(work_dir) / spec.dataset
        write_synthetic(spec, root, num_images, seed)
        for variant in variants:
            samples = _make_samples(spec, root, variant, Path(work_dir) / "prepared")
            device_part = variant == "prepared" and spec.kind == "target"
            device_seconds = None
            for num_workers in workers:
                loader = InfiniteLoader(samples, batch_size, seed, num_workers=num_workers)
                kept = []
                with loader:
                    next(loader)
                    start = time.perf_counter()
                    for _ in range(batches):
                        batch = next(loader)
                        if device_part and device_seconds is None:
                            kept.append(batch)
                    seconds = time.perf_counter() - start
                if kept:
                    device_seconds = time_device_views(kept, samples.cfg, device)
                results.append(ThroughputResult(spec.name, num_workers, batch_size, batches, seconds, variant,
                                                device_seconds if device_part else None,
                                                device if device_part else None))
    return results


def format_results(results: Sequence[ThroughputResult]) -> str:
    """Markdown table of the results."""
    return markdown_table(
        ["pipeline", "variant", "workers", "images/s", "images/s per core", "batches x batch size", "seconds"],
        ([r.pipeline, VARIANT_NAMES.get(r.variant, r.variant), r.num_workers, f"{r.images_per_second:.2f}",
          f"{r.images_per_second_per_core:.2f}", f"{r.batches} x {r.batch_size}", f"{r.seconds:.2f}"]
         for r in results),
        right_aligned={"workers", "images/s", "images/s per core", "batches x batch size", "seconds"})


SIDE_BY_SIDE_COLUMNS = (
    "pipeline", "workers", f"{VARIANT_NAMES['original']}: images/s per core",
    f"{VARIANT_NAMES['prepared']}: images/s per core", "new/old", "strong view on device, ms per batch",
    "new incl. device part on the same core: images/s per core", "new/old")


def format_side_by_side(results: Sequence[ThroughputResult]) -> str:
    """Markdown table: per pipeline and worker count, the original and the prepared
    variant per core, their ratio, and the target pair's device time per batch."""
    rows = []
    by_key = {(r.pipeline, r.num_workers, r.variant): r for r in results}
    for (pipeline, workers, variant), old in by_key.items():
        new = by_key.get((pipeline, workers, "prepared"))
        if variant != "original" or new is None:
            continue
        device, whole = "-", new.images_per_second_per_core
        if new.device_seconds_per_batch is not None:
            device = f"{1000 * new.device_seconds_per_batch:.1f} ({new.device})"
            whole = 1.0 / (1.0 / whole + new.device_seconds_per_batch / new.batch_size)
        rows.append([pipeline, workers, f"{old.images_per_second_per_core:.2f}",
                     f"{new.images_per_second_per_core:.2f}", f"{new.images_per_second / old.images_per_second:.2f}x",
                     device, f"{whole:.2f}", f"{whole / old.images_per_second_per_core:.2f}x"])
    return markdown_table(SIDE_BY_SIDE_COLUMNS, rows, right_aligned=SIDE_BY_SIDE_COLUMNS[1:])


def environment() -> str:
    """Python, torch and the machine, in one line (printed above the tables)."""
    machine = platform.processor() or platform.machine()
    return f"python {platform.python_version()}, torch {torch.__version__}, {machine}"
