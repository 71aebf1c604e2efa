"""GTA5 ("Playing for Data") as distributed: ``root/images/*.png`` and ``root/labels/*.png``.

Labels are palette PNGs whose pixel *indices* are Cityscapes label ids (0..33), so
the same look-up table as Cityscapes gives train ids for 19, 16 or 13 classes. A
few images differ in size from their labels; such a label is resized to its
image (nearest neighbour) with a warning, once per file.

GTA5 has no official split: ``split`` must be ``"train"`` (all images, or those
named in ``list_file``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tufl.data.base import SampleFiles, SegDataset, read_name_list, require_folders, scan_images
from tufl.data.io import Interpolation, LayoutError, Size, read_index_png
from tufl.data.labels import cityscapes_id_lut

CITYSCAPES_LABEL_IDS = frozenset(range(34))


class GTA5Dataset(SegDataset):
    """GTA5 images with Cityscapes-id palette labels (see module docstring)."""

    name = "gta5"
    raw_label_ids = CITYSCAPES_LABEL_IDS
    resize_mismatched_labels = True

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
        if split != "train":
            raise ValueError(
                f"gta5: split must be 'train' (GTA5 has no official splits; select images "
                f"with list_file), got {split!r}"
            )
        base = Path(root)
        require_folders(base, ["images", "labels"], "GTA5")
        names = read_name_list(list_file) if list_file else scan_images(base / "images", "*")
        if not names:
            raise LayoutError(f"{base}: no images in {base / 'images'} (expected images/00001.png, ...)")
        samples = [
            SampleFiles(n, str(base / "images" / n), str(base / "labels" / n)) for n in names
        ]
        super().__init__(
            base,
            samples,
            num_classes,
            resize=resize,
            interpolation=interpolation,
            skip_bad_files=skip_bad_files,
            label_folder=str(base / "labels"),
            label_pattern="*.png",
            from_list=list_file is not None,
        )

    def read_raw_label(self, path: str) -> np.ndarray:
        return read_index_png(path)

    @property
    def label_lut(self) -> np.ndarray:
        return cityscapes_id_lut(self.num_classes)
