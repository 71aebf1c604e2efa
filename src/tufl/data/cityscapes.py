"""Cityscapes as distributed: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` and
``gtFine/{split}/{city}/*_gtFine_labelIds.png`` (Cityscapes label ids, 0..33).

Labels are required for ``val``. For other splits they are used when
``gtFine/{split}`` exists (the target domain of training is unlabelled, but its
labels, when present, let the trainer monitor pseudo-label quality).

:class:`CityscapesIdDataset` is the label decoding shared by every dataset whose label
files are 8-bit PNGs of Cityscapes label ids (GTA5, Cityscapes, ACDC, Dark Zurich,
Cross-City).
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


class CityscapesIdDataset(SegDataset):
    """A dataset whose labels are 8-bit (grey or palette-index) PNGs of Cityscapes label ids."""

    raw_label_ids = CITYSCAPES_LABEL_IDS
    read_raw_label = staticmethod(read_index_png)
    train_id_lut = staticmethod(cityscapes_id_lut)


class CityscapesDataset(CityscapesIdDataset):
    """Cityscapes images with label-id annotations (see module docstring)."""

    name = "cityscapes"
    root_title = "Cityscapes"
    image_suffix = IMAGE_SUFFIX
    label_suffix = LABEL_SUFFIX
    image_pattern = f"*/*{IMAGE_SUFFIX}.*"
    label_pattern = f"*/*{LABEL_SUFFIX}"
    image_example = f"{{images}}/<city>/<name>{IMAGE_SUFFIX}.png"

    @classmethod
    def locate(cls, root: Path, split: str) -> SplitLayout:
        if split not in CITYSCAPES_SPLITS:
            raise ValueError(f"cityscapes: split must be one of {CITYSCAPES_SPLITS}, got {split!r}")
        return SplitLayout(root, f"leftImg8bit/{split}", f"gtFine/{split}", labels_required=split == "val",
                           split=split)
