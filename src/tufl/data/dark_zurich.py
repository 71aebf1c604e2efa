"""Dark Zurich (Sakaridis et al., ICCV 2019): night-time driving in Zurich.

Layout of the official downloads ``Dark_Zurich_train_anon.zip``,
``Dark_Zurich_val_anon.zip`` (and ``Dark_Zurich_test_anon_withoutGt.zip``) unpacked
into one root::

    rgb_anon/train/{night,twilight,day}/{sequence}/{sequence}_frame_{n}_rgb_anon.png
    rgb_anon/val/night/GOPR0356/GOPR0356_frame_{n}_rgb_anon.png
    gt/val/night/GOPR0356/GOPR0356_frame_{n}_gt_labelIds.png
    rgb_anon/test/night/{sequence}/..._rgb_anon.png            (no public labels)

The train split is unlabelled (2,416 night, 2,920 twilight and 3,041 day images);
the labelled val split has 50 night images of one sequence. ``rgb_anon/val_ref``
(daytime references), ``gps/`` and ``lists_file_names/`` are not used, nor
``gt/val/...`` files other than ``*_gt_labelIds.png`` (``_gt_labelTrainIds``,
``_gt_labelColor``, ``_gt_invIds`` = the invalid-region masks).

Label encoding: single-channel 8-bit PNGs of *Cityscapes label ids* (0..33), mapped
to train ids by ``labels.cityscapes_id_lut``; other ids are ignored (255).
Sources: the Dark Zurich README and download page (data.vision.ee.ethz.ch/csakarid),
mmsegmentation's ``configs/_base_/datasets/dark_zurich.py``
(``img_dir=rgb_anon/val/night/GOPR0356``, ``ann_dir=gt/val/night/GOPR0356``) and
DAFormer's Cityscapes -> Dark Zurich setup (target = train night images).

``split``: ``"train"`` = train/night (the adaptation target of DAFormer, HRDA and
MIC), ``"train/twilight"``, ``"train/day"``, ``"val"`` (= ``"val/night"``, labels
required) or ``"test"`` (= ``"test/night"``, no labels). Sample names are
``{sequence}/{file}`` relative to ``rgb_anon/{part}/{time}``.
"""

from __future__ import annotations

from pathlib import Path

from tufl.data.acdc import ANON_IMAGE_SUFFIX, ANON_LABEL_SUFFIX
from tufl.data.base import SplitLayout
from tufl.data.cityscapes import CityscapesIdDataset

DARK_ZURICH_SPLITS = ("train/night", "train/twilight", "train/day", "val/night", "test/night")
_SHORT_SPLITS = {"train": "train/night", "val": "val/night", "test": "test/night"}


class DarkZurichDataset(CityscapesIdDataset):
    """Dark Zurich images; Cityscapes label ids on the val split (see module docstring)."""

    name = "dark_zurich"
    check_split = "val"
    default_split = "val"
    root_title = "Dark Zurich"
    image_suffix = ANON_IMAGE_SUFFIX
    label_suffix = ANON_LABEL_SUFFIX
    image_pattern = f"*/*{ANON_IMAGE_SUFFIX}.*"
    label_pattern = f"*/*{ANON_LABEL_SUFFIX}"
    image_example = f"{{images}}/<sequence>/<name>{ANON_IMAGE_SUFFIX}.png"

    @classmethod
    def locate(cls, root: Path, split: str) -> SplitLayout:
        full = _SHORT_SPLITS.get(split, split)
        if full not in DARK_ZURICH_SPLITS:
            raise ValueError(
                f"dark_zurich: split must be one of {tuple(_SHORT_SPLITS)} or {DARK_ZURICH_SPLITS}, got {split!r}"
            )
        part = full.split("/", 1)[0]
        labels = f"gt/{full}" if part == "val" else None
        return SplitLayout(root, f"rgb_anon/{full}", labels, labels_required=part == "val", split=full)
