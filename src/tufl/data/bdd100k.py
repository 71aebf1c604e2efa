"""BDD100K semantic segmentation (Yu et al., CVPR 2020): the 10K images with 19-class masks.

Current official layout (``bdd100k_images_10k.zip`` + ``bdd100k_sem_seg_labels_trainval.zip``,
both unpacking into a ``bdd100k/`` folder, which is the root)::

    images/10k/{train,val,test}/{name}.jpg          7,000 / 1,000 / 2,000 images
    labels/sem_seg/masks/{train,val}/{name}.png     one mask per image, same stem

(``labels/sem_seg/colormaps``, ``polygons`` and ``rles`` hold the same labels in
other forms and are not read.) The older release (``bdd100k_seg.zip``) is read too::

    seg/images/{train,val,test}/{name}.jpg
    seg/labels/{train,val}/{name}_train_id.png      (seg/color_labels/ not read)

A root that holds a ``bdd100k/`` folder instead of these is descended into.

Label encoding: single-channel 8-bit PNGs that already hold the 19 *Cityscapes train
ids* (0 road ... 18 bicycle, the Cityscapes order) with 255 for "unknown", which is
not evaluated. They are used as they are for 19 classes (any other value is
ignored) and reduced with ``labels.remap_lut`` for 16 or 13. Sources: the BDD100K
documentation (doc.bdd100k.com, "Label Format": semantic segmentation categories
0..18, 255 unknown; download page: 10K Images, Semantic Segmentation), the
mmsegmentation BDD100K project (``projects/bdd100k_dataset``: ``images/10k/{split}``,
``labels/sem_seg/masks/{split}``, ``.jpg``/``.png``); for the older ``seg/`` layout, the
AutoNUE 2021 domain adaptation instructions (``bdd100k/seg/images/{train,val,test}``)
and public notes on ``bdd100k_seg.zip`` (``seg/labels/{split}/{name}_train_id.png``).

``split``: train, val (labels required) or test (no labels).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tufl.data.base import SegDataset, SplitLayout
from tufl.data.io import read_index_png
from tufl.data.labels import IGNORE_INDEX, remap_lut

BDD100K_SPLITS = ("train", "val", "test")
BDD100K_LABEL_VALUES = frozenset(range(19)) | {IGNORE_INDEX}
LEGACY_LABEL_SUFFIX = "_train_id.png"


def bdd100k_root(root: Path) -> tuple[Path, bool]:
    """(folder holding the data, whether it is the older ``seg/`` release)."""
    for base in (root, root / "bdd100k"):
        if (base / "images" / "10k").is_dir() or (base / "labels" / "sem_seg").is_dir():
            return base, False
        if (base / "seg" / "images").is_dir():
            return base, True
    return root, False


@lru_cache(maxsize=None)
def bdd100k_lut(num_classes: int) -> np.ndarray:
    """Look-up table (256 entries): BDD100K mask value (19 train ids, 255) -> train id of the class set."""
    return remap_lut(19, num_classes)


class BDD100KDataset(SegDataset):
    """BDD100K 10K images with 19-class train-id masks (see module docstring)."""

    name = "bdd100k"
    check_split = "val"
    default_split = "val"
    raw_label_ids = BDD100K_LABEL_VALUES
    root_title = "BDD100K"
    image_example = "{images}/<name>.jpg"
    read_raw_label = staticmethod(read_index_png)
    train_id_lut = staticmethod(bdd100k_lut)

    def __init__(self, root: str | os.PathLike[str], split: str | None = None, *args: Any,
                 **kwargs: Any) -> None:
        self.legacy = bdd100k_root(Path(root))[1]
        self.label_suffix = LEGACY_LABEL_SUFFIX if self.legacy else ".png"
        self.label_pattern = f"*{self.label_suffix}"
        super().__init__(root, split, *args, **kwargs)

    @classmethod
    def locate(cls, root: Path, split: str) -> SplitLayout:
        if split not in BDD100K_SPLITS:
            raise ValueError(f"bdd100k: split must be one of {BDD100K_SPLITS}, got {split!r}")
        base, legacy = bdd100k_root(root)
        images, labels = (f"seg/images/{split}", f"seg/labels/{split}") if legacy else (
            f"images/10k/{split}", f"labels/sem_seg/masks/{split}")
        return SplitLayout(base, images, None if split == "test" else labels, labels_required=split == "val",
                           split=split)
