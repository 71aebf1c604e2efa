"""SYNTHIA-RAND-CITYSCAPES as distributed: ``root/RGB/*.png`` and ``root/GT/LABELS/*.png``.

Labels are 16-bit 3-channel PNGs holding the SYNTHIA class id (0..22, see
``labels.SYNTHIA_TO_NAME``) in the first channel and an instance id in the second.
They are read with OpenCV (optional extra ``tufl[synthia]``) because Pillow
truncates them to 8 bits. SYNTHIA has no official split: ``split`` must be
``"train"`` (all images, or those named in ``list_file``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tufl.data.base import SampleFiles, SegDataset, read_name_list, require_folders, scan_images
from tufl.data.io import Interpolation, LayoutError, Size, read_synthia_label
from tufl.data.labels import synthia_id_lut

SYNTHIA_CLASS_IDS = frozenset(range(23))


class SynthiaDataset(SegDataset):
    """SYNTHIA-RAND-CITYSCAPES images with 16-bit SYNTHIA-id labels (see module docstring)."""

    name = "synthia"
    raw_label_ids = SYNTHIA_CLASS_IDS

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        num_classes: int = 16,
        list_file: str | None = None,
        resize: Size | None = None,
        interpolation: Interpolation = "bilinear",
        skip_bad_files: bool = False,
    ) -> None:
        if split != "train":
            raise ValueError(
                f"synthia: split must be 'train' (SYNTHIA has no official splits; select images "
                f"with list_file), got {split!r}"
            )
        base = Path(root)
        require_folders(base, ["RGB", "GT/LABELS"], "SYNTHIA-RAND-CITYSCAPES")
        names = read_name_list(list_file) if list_file else scan_images(base / "RGB", "*")
        if not names:
            raise LayoutError(f"{base}: no images in {base / 'RGB'} (expected RGB/0000000.png, ...)")
        labels = base / "GT" / "LABELS"
        samples = [SampleFiles(n, str(base / "RGB" / n), str(labels / n)) for n in names]
        super().__init__(
            base,
            samples,
            num_classes,
            resize=resize,
            interpolation=interpolation,
            skip_bad_files=skip_bad_files,
            label_folder=str(labels),
            label_pattern="*.png",
            from_list=list_file is not None,
        )

    def read_raw_label(self, path: str) -> np.ndarray:
        return read_synthia_label(path)

    @property
    def label_lut(self) -> np.ndarray:
        return synthia_id_lut(self.num_classes)
