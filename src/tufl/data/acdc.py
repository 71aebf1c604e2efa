"""ACDC (Adverse Conditions Dataset with Correspondences, Sakaridis et al., ICCV 2021).

Layout of the official downloads ``rgb_anon_trainvaltest.zip`` and ``gt_trainval.zip``
unpacked into one root::

    rgb_anon/{condition}/{split}/{sequence}/{sequence}_frame_{n}_rgb_anon.png
    gt/{condition}/{split}/{sequence}/{sequence}_frame_{n}_gt_labelIds.png

with ``condition`` in fog, night, rain, snow and ``split`` in train (400 images per
condition), val (406 in all) and test (500 per condition, no public labels). The
sequences are GoPro recordings (``GOPR0475``, ...). ``gt/`` also holds
``*_gt_labelTrainIds.png``, ``*_gt_labelColor.png`` and ``*_gt_invIds.png`` (the
invalid-region masks of the uncertainty-aware metric); only ``*_gt_labelIds.png`` is
read. The ``{split}_ref`` folders (daytime reference images) are not used.

Label encoding: single-channel 8-bit PNGs of *Cityscapes label ids* (0..33), the
Cityscapes class definitions; ``labels.cityscapes_id_lut`` gives the 19 (or 16/13)
train ids and every other id is ignored (255). Sources: the ACDC download page and
README (acdc.vision.ee.ethz.ch), mmsegmentation-based configs (e.g. Rein,
``configs/_base_/datasets/*-acdc_1024x1024.py``: ``img_path=rgb_anon/{cond}/{split}``,
``img_suffix=_rgb_anon.png``, ``seg_map_path=gt/{cond}/{split}``).

``split`` selects conditions and the part: ``"train"``, ``"val"`` or ``"test"``
takes all four conditions (the DAFormer/HRDA/MIC target: ACDC train, all conditions);
``"night/val"`` one condition; ``"fog,snow/train"`` several. Sample names are
``{condition}/{split}/{sequence}/{file}`` relative to ``rgb_anon/`` (also the form
of ``list_file`` entries). Labels are required for val; for train they are used
when present.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tufl.data.base import SplitLayout, read_name_list, scan_images
from tufl.data.cityscapes import CityscapesIdDataset
from tufl.data.io import LayoutError

ACDC_CONDITIONS = ("fog", "night", "rain", "snow")
ACDC_PARTS = ("train", "val", "test")
ANON_IMAGE_SUFFIX = "_rgb_anon"
ANON_LABEL_SUFFIX = "_gt_labelIds.png"


def parse_acdc_split(split: str) -> tuple[tuple[str, ...], str]:
    """``"train"`` -> (all conditions, "train"); ``"night/val"`` -> (("night",), "val")."""
    conditions_text, _, part = split.rpartition("/")
    conditions = tuple(c.strip().lower() for c in conditions_text.split(",")) if conditions_text else ACDC_CONDITIONS
    unknown = [c for c in conditions if c not in ACDC_CONDITIONS]
    if part not in ACDC_PARTS or unknown or not conditions:
        raise ValueError(
            f"acdc: split must be 'train', 'val' or 'test' (all conditions) or '<condition>[,<condition>...]/<part>' "
            f"with conditions {ACDC_CONDITIONS} (e.g. 'night/val'), got {split!r}"
        )
    return tuple(dict.fromkeys(conditions)), part


class ACDCDataset(CityscapesIdDataset):
    """ACDC images of one or more adverse conditions, Cityscapes label ids (see module docstring)."""

    name = "acdc"
    check_split = "val"
    root_title = "ACDC"
    image_suffix = ANON_IMAGE_SUFFIX  # seq/x_rgb_anon.png -> seq/x_gt_labelIds.png, as in Dark Zurich
    label_suffix = ANON_LABEL_SUFFIX
    image_example = f"{{images}}/<condition>/<split>/<sequence>/<name>{ANON_IMAGE_SUFFIX}.png"

    def __init__(self, root: str | os.PathLike[str], split: str | None = None, *args: Any,
                 **kwargs: Any) -> None:
        self.conditions, self.part = parse_acdc_split(self.default_split if split is None else split)
        self.label_pattern = f"*/{self.part}/*/*{ANON_LABEL_SUFFIX}"
        super().__init__(root, split, *args, **kwargs)

    @classmethod
    def locate(cls, root: Path, split: str) -> SplitLayout:
        _, part = parse_acdc_split(split)
        labels = None if part == "test" else "gt"  # the test labels are withheld
        return SplitLayout(root, "rgb_anon", labels, labels_required=part == "val", split=split)

    def _image_names(self, folder: Path, list_file: str | None) -> list[str]:
        root = folder.parent
        wanted = [f"{condition}/{self.part}" for condition in self.conditions]
        folders = [f"rgb_anon/{w}" for w in wanted]
        if self.part == "val":
            folders += [f"gt/{w}" for w in wanted]
        missing = [f for f in folders if not (root / f).is_dir()]
        if missing:
            raise LayoutError(f"{root}: not an ACDC root: missing {', '.join(f + '/' for f in missing)}")
        if list_file:
            return read_name_list(list_file)
        return [f"{w}/{name}" for w in wanted for name in scan_images(folder / w, f"*/*{ANON_IMAGE_SUFFIX}.*")]

    def orphan_labels(self) -> list[str]:
        folder = os.path.normpath(self._label_folder or "")
        prefixes = tuple(os.path.join(folder, c, self.part) + os.sep for c in self.conditions)
        return [p for p in super().orphan_labels() if p.startswith(prefixes)]
