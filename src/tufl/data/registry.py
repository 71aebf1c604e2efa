"""The dataset registry: every dataset layout by the name configs give it, and the builders.

Adding a layout is one :class:`~tufl.data.base.SegDataset` subclass (its folders,
file patterns and label decoding as class attributes, see ``docs/extending.md``) and
one entry of :data:`DATASETS`; ``data.*.name``, ``tufl check-data --dataset`` and the
per-dataset defaults (split, class count) are read from it.
"""

from __future__ import annotations

from typing import Any

from tufl.data.acdc import ACDCDataset
from tufl.data.base import SegDataset
from tufl.data.class_set import apply_class_set, load_class_set
from tufl.data.bdd100k import BDD100KDataset
from tufl.data.cityscapes import CityscapesDataset
from tufl.data.crosscity import CrossCityDataset
from tufl.data.dark_zurich import DarkZurichDataset
from tufl.data.folder import FolderDataset, ImagesDataset
from tufl.data.gta5 import GTA5Dataset
from tufl.data.io import DEFAULT_MAX_IMAGE_PIXELS, Interpolation, Size
from tufl.data.mapillary import MapillaryDataset
from tufl.data.synthia import SynthiaDataset
from tufl.runtime.registry import Registry

# data.*.name -> the dataset; the order is the order of docs and help texts.
DATASETS: Registry[type[SegDataset]] = Registry("dataset")
for _dataset in (GTA5Dataset, SynthiaDataset, CityscapesDataset, CrossCityDataset, ACDCDataset, DarkZurichDataset,
                 BDD100KDataset, MapillaryDataset, FolderDataset, ImagesDataset):
    DATASETS.register(_dataset.name, _dataset)
# The datasets of your own data, which take the images/labels/label_rule options.
OWN_DATA = (FolderDataset.name, ImagesDataset.name)


def build_dataset(
    name: str,
    root: str,
    split: str,
    num_classes: int,
    list_file: str | None = None,
    resize: Size | None = None,
    skip_bad_files: bool = False,
    interpolation: Interpolation = "bilinear",
    classes: str | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    **own_data: object,
) -> SegDataset:
    """Build dataset ``name`` from its official layout, or your own data (folder, images).

    ``resize`` is ``(width, height)`` applied at load time; ``list_file`` selects
    samples by relative name, one per line (default: every image found, sorted).
    ``classes`` is a class definition file: the classes of folder/images data, or for
    an official dataset the ``from_source`` mapping of its classes to yours.
    ``own_data`` (folder/images only): ``images``, ``labels``, ``label_rule``.
    ``max_image_pixels`` (``data.max_image_pixels``): images and labels with more pixels are
    refused from their header, before decoding (bad samples).
    """
    cls = DATASETS.get(name)
    common = {"list_file": list_file, "resize": resize, "interpolation": interpolation,
              "skip_bad_files": skip_bad_files, "max_image_pixels": max_image_pixels}
    if issubclass(cls, FolderDataset):
        return cls(root, split=split, num_classes=num_classes, classes=classes, **common,
                   **own_data)  # type: ignore[arg-type]
    if own_data:
        raise ValueError(f"{name}: {sorted(own_data)} only apply to folder and images datasets")
    if classes:
        native = cls(root, split=split, num_classes=cls.default_num_classes, **common)  # type: ignore[arg-type]
        return apply_class_set(native, load_class_set(classes), num_classes)
    if num_classes not in cls.supported_num_classes:
        raise ValueError(
            f"{name}: num_classes must be one of {cls.supported_num_classes}, got {num_classes}; to use "
            f"{name} with your own class set, give it a class definition file (classes) with a from_source "
            "section (docs/own-data.md)"
        )
    return cls(root, split=split, num_classes=num_classes, **common)  # type: ignore[arg-type]


def open_dataset(ds: Any, num_classes: int, skip_bad_files: bool,
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> SegDataset:
    """Build the dataset a config section (a :class:`~tufl.data.config.DatasetConfig`:
    ``data.source``, ``data.target``, ``data.val``) names; ``max_image_pixels`` is
    ``data.max_image_pixels``."""
    own = {"images": tuple(ds.images), "labels": ds.labels, "label_rule": ds.label_rule}
    own_data = own if ds.name in OWN_DATA else {}
    return build_dataset(ds.name, ds.root, ds.split, num_classes, list_file=ds.list_file,
                         resize=ds.resize, skip_bad_files=skip_bad_files, interpolation=ds.interpolation,
                         classes=ds.classes, max_image_pixels=max_image_pixels, **own_data)
