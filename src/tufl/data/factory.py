"""One entry point that builds any dataset by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tufl.data.base import SegDataset
from tufl.data.cityscapes import CityscapesDataset
from tufl.data.crosscity import CrossCityDataset
from tufl.data.gta5 import GTA5Dataset
from tufl.data.io import Interpolation, Size
from tufl.data.synthia import SynthiaDataset

if TYPE_CHECKING:  # the config schema imports tufl.data
    from tufl.config.schema import DatasetConfig

DATASETS: dict[str, type[SegDataset]] = {
    "gta5": GTA5Dataset,
    "synthia": SynthiaDataset,
    "cityscapes": CityscapesDataset,
    "crosscity": CrossCityDataset,
}


def build_dataset(
    name: str,
    root: str,
    split: str,
    num_classes: int,
    list_file: str | None = None,
    resize: Size | None = None,
    skip_bad_files: bool = False,
    interpolation: Interpolation = "bilinear",
) -> SegDataset:
    """Build dataset ``name`` (gta5, synthia, cityscapes, crosscity) from its official layout.

    ``resize`` is ``(width, height)`` applied at load time; ``list_file`` selects
    samples by relative name, one per line (default: every image found, sorted).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    cls = DATASETS[name]
    if num_classes not in cls.supported_num_classes:
        raise ValueError(f"{name}: num_classes must be one of {cls.supported_num_classes}, got {num_classes}")
    return cls(
        root,
        split=split,
        num_classes=num_classes,
        list_file=list_file,
        resize=resize,
        interpolation=interpolation,
        skip_bad_files=skip_bad_files,
    )


def open_dataset(ds: DatasetConfig, num_classes: int, skip_bad_files: bool) -> SegDataset:
    """Build the dataset a config section (``data.source``, ``data.target``, ``data.val``) names."""
    return build_dataset(ds.name, ds.root, ds.split, num_classes, list_file=ds.list_file,
                         resize=ds.resize, skip_bad_files=skip_bad_files, interpolation=ds.interpolation)
