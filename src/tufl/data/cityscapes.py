"""Cityscapes as distributed: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` and
``gtFine/{split}/{city}/*_gtFine_labelIds.png`` (Cityscapes label ids, 0..33).

Labels are required for ``val``. For other splits they are used when
``gtFine/{split}`` exists (the target domain of training is unlabelled, but its
labels, when present, let the trainer monitor pseudo-label quality).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tufl.data.base import SampleFiles, SegDataset, read_name_list, require_folders, scan_images
from tufl.data.io import Interpolation, LayoutError, Size, read_index_png
from tufl.data.labels import cityscapes_id_lut

CITYSCAPES_LABEL_IDS = frozenset(range(34))
CITYSCAPES_SPLITS = ("train", "val", "test")
IMAGE_SUFFIX = "_leftImg8bit"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def cityscapes_label_name(image_name: str) -> str:
    """``city/x_leftImg8bit.png`` -> ``city/x_gtFine_labelIds.png``."""
    stem = image_name.rsplit(".", 1)[0]
    if stem.endswith(IMAGE_SUFFIX):
        stem = stem[: -len(IMAGE_SUFFIX)]
    return stem + LABEL_SUFFIX


class CityscapesDataset(SegDataset):
    """Cityscapes images with label-id annotations (see module docstring)."""

    name = "cityscapes"
    raw_label_ids = CITYSCAPES_LABEL_IDS

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        num_classes: int = 19,
        list_file: str | None = None,
        resize: Size | None = None,
        interpolation: Interpolation = "bilinear",
        skip_bad_files: bool = False,
    ) -> None:
        if split not in CITYSCAPES_SPLITS:
            raise ValueError(f"cityscapes: split must be one of {CITYSCAPES_SPLITS}, got {split!r}")
        base = Path(root)
        images = f"leftImg8bit/{split}"
        labels = f"gtFine/{split}"
        require_folders(base, [images, labels] if split == "val" else [images], "Cityscapes")
        with_labels = (base / labels).is_dir()
        names = read_name_list(list_file) if list_file else scan_images(base / images, f"*/*{IMAGE_SUFFIX}.*")
        if not names:
            raise LayoutError(
                f"{base}: no images in {base / images} (expected {images}/<city>/<name>{IMAGE_SUFFIX}.png)"
            )
        samples = [
            SampleFiles(
                n,
                str(base / images / n),
                str(base / labels / cityscapes_label_name(n)) if with_labels else None,
            )
            for n in names
        ]
        super().__init__(
            base,
            samples,
            num_classes,
            resize=resize,
            interpolation=interpolation,
            skip_bad_files=skip_bad_files,
            label_folder=str(base / labels) if with_labels else None,
            label_pattern=f"*/*{LABEL_SUFFIX}",
            from_list=list_file is not None,
        )
        self.split = split

    def read_raw_label(self, path: str) -> np.ndarray:
        return read_index_png(path)

    @property
    def label_lut(self) -> np.ndarray:
        return cityscapes_id_lut(self.num_classes)
