"""Cityscapes as distributed: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` and
``gtFine/{split}/{city}/*_gtFine_labelIds.png`` (Cityscapes label ids, 0..33).

Labels are required for ``val``. For other splits they are used when
``gtFine/{split}`` exists (the target domain of training is unlabelled, but its
labels, when present, let the trainer monitor pseudo-label quality).
"""

from __future__ import annotations

from pathlib import Path

from tufl.data.base import SegDataset, SplitLayout
from tufl.data.io import read_index_png
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
    root_title = "Cityscapes"
    image_pattern = f"*/*{IMAGE_SUFFIX}.*"
    label_pattern = f"*/*{LABEL_SUFFIX}"
    image_example = f"{{images}}/<city>/<name>{IMAGE_SUFFIX}.png"
    label_name = staticmethod(cityscapes_label_name)
    read_raw_label = staticmethod(read_index_png)
    train_id_lut = staticmethod(cityscapes_id_lut)

    @classmethod
    def locate(cls, root: Path, split: str) -> SplitLayout:
        if split not in CITYSCAPES_SPLITS:
            raise ValueError(f"cityscapes: split must be one of {CITYSCAPES_SPLITS}, got {split!r}")
        return SplitLayout(root, f"leftImg8bit/{split}", f"gtFine/{split}", labels_required=split == "val",
                           split=split)
