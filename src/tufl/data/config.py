"""The ``data`` section of a config: the datasets a run reads, batch size, augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tufl.data.rare_class import RareClassSamplingConfig
from tufl.data.registry import DATASETS, OWN_DATA
from tufl.data.transforms import SourceAugConfig
from tufl.data.views import TargetViewConfig
from tufl.runtime.checks import (
    MAX_BATCH_SIZE,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    count_within,
    size_problems,
    within,
    workers_problems,
)


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset: an official layout, or your own data (docs/own-data.md)."""

    # Dataset format (the dataset registry, tufl.data.registry): an official layout
    # (gta5, synthia, cityscapes, crosscity, acdc, dark_zurich, bdd100k, mapillary) or your own
    # data (folder: images with or without label maps and a class definition file; images:
    # unlabelled images, any sizes).
    name: str = field(default="cityscapes", metadata={"choices": DATASETS})
    # Folder the official download unpacked to (folder/images: the folder the paths below are relative to).
    root: str = "data/cityscapes"
    # gta5/synthia: train; cityscapes: train/val/test; crosscity: <City>/train or <City>/test.
    split: str = "train"
    # Text file of sample names (ADVENT/DACS split files); null = every file found.
    # folder/images: lines "image [label]", paths relative to root.
    list_file: str | None = None
    # (width, height) applied when loading; null = native size.
    resize: tuple[int, int] | None = None
    # Image resampling of the resize (labels always use nearest neighbour).
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    # folder/images: image folders or globs relative to root (e.g. ["frames/**/*.jpg"]); empty = root.
    images: tuple[str, ...] = ()
    # folder: label folder relative to root; null = unlabelled.
    labels: str | None = None
    # folder: the label file of an image: "stem" (same relative path, .png) or a suffix
    # substitution "OLD->NEW" (e.g. "_leftImg8bit.png->_gtFine_labelIds.png").
    label_rule: str = "stem"
    # Class definition file (YAML, docs/own-data.md). folder/images: raw label value -> train
    # id, name, colour, and ignored values; official datasets: its from_source section maps
    # their classes to yours (e.g. GTA5's 19 classes to 7 merged ones).
    classes: str | None = None

    @property
    def title(self) -> str:
        """How output names the data: ``cityscapes val``, or ``folder at ROOT`` (your own
        folders have no splits)."""
        return f"{self.name} at {self.root}" if self.name in OWN_DATA else f"{self.name} {self.split}"

    def problems(self) -> list[str]:
        if self.name not in DATASETS:
            return [f"name: {DATASETS.unknown(self.name)}"]
        out = []
        if self.resize is not None:
            out += size_problems("resize", self.resize, MAX_IMAGE_SIDE)
        own_data = self.name in OWN_DATA
        for key, default in (("images", ()), ("labels", None), ("label_rule", "stem")):
            if not own_data and getattr(self, key) != default:
                out.append(f"{key}: only folder and images datasets take it (name is {self.name})")
        if self.name == "images" and self.labels is not None:
            out.append("labels: an images dataset is unlabelled; use name: folder for images with label maps")
        if self.name == "folder" and self.labels is not None and not self.classes:
            out.append("classes: a folder dataset with labels needs a class definition file (docs/own-data.md)")
        if self.images and self.list_file:
            out.append("images: give either images (folders/globs) or list_file, not both")
        rule = self.label_rule
        if rule != "stem" and (rule.count("->") != 1 or not all(rule.split("->"))):
            out.append(f"label_rule: must be 'stem' or 'OLD->NEW' (e.g. '_leftImg8bit.png->_gtFine_labelIds.png'), "
                       f"got {rule!r}")
        return out


@dataclass(frozen=True)
class DataConfig:
    """Datasets, batch size and augmentation."""

    # Labelled source domain.
    source: DatasetConfig = field(default_factory=lambda: DatasetConfig("gta5", "data/GTA5", "train", resize=(1280, 720)))
    # Unlabelled target domain (its labels, if any, are never used for training).
    target: DatasetConfig = field(default_factory=lambda: DatasetConfig("cityscapes", "data/cityscapes", "train", resize=(1024, 512)))
    # Labelled target split for validation during training and `tufl evaluate`;
    # null = no validation.
    val: DatasetConfig | None = field(default_factory=lambda: DatasetConfig("cityscapes", "data/cityscapes", "val", resize=(1024, 512)))
    # Images per domain per optimiser step, over all GPUs and accumulation steps.
    batch_size: int = 2
    # Data-loading worker processes per GPU.
    num_workers: int = 4
    # Training: skip unreadable or inconsistent samples (each named once, counted in
    # metrics.jsonl and bad_samples.json) instead of stopping. Validation never skips
    # (see eval.skip_bad_files).
    skip_bad_files: bool = True
    # Training stops with an error once more than this fraction of a domain's samples is bad.
    max_bad_fraction: float = 0.01
    # Images larger than this many pixels are refused before they are decoded (read from the
    # file's header): a bad sample in training, a named skip in check-data and predict. The
    # default (64 Mpixel) admits 8K frames; it guards against decompression bombs.
    max_image_pixels: int = 64_000_000
    # Source augmentation: random scale, crop (width, height), flip, optional jitter.
    source_aug: SourceAugConfig = field(default_factory=SourceAugConfig)
    # Target weak view (scale, crop, flip) and strong view (photometric T + affine A).
    target_views: TargetViewConfig = field(default_factory=TargetViewConfig)
    # Where the class -> images index of the source (long-tail pasting, rare-class
    # sampling) is cached; null = <output_dir>/cache.
    cache_dir: str | None = None
    # Rare-class sampling of the source images (DAFormer, Hoyer et al., CVPR 2022).
    rare_class_sampling: RareClassSamplingConfig = field(default_factory=RareClassSamplingConfig)
    # Where `tufl prepare-data` writes prepared copies of the training datasets (every
    # sample stored at its training size: loading is then several times faster) and where
    # training looks for them; relative paths are relative to the working directory,
    # like dataset roots. null = never use prepared copies.
    prepared_dir: str | None = "data/prepared"

    def problems(self) -> list[str]:
        return (count_within("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
                + workers_problems("num_workers", self.num_workers)
                + within("max_bad_fraction", self.max_bad_fraction, 0, 1)
                + count_within("max_image_pixels", self.max_image_pixels, 1, MAX_IMAGE_PIXELS))
