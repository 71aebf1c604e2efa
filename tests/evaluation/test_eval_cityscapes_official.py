"""Our mIoU equals cityscapesscripts' evalPixelLevelSemanticLabeling on the same files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tufl.data import labels
from tufl.evaluation.metrics import ConfusionMatrix
from tufl.evaluation.writers import save_label_ids

official = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")

CITY = "testcity"
# Raw label ids that Cityscapes evaluates (the 19 classes) and some it ignores
# (unlabeled, ego vehicle, ground, parking, rail track, guard rail, caravan, ...).
EVALUATED_IDS = [cid for _, cid, _ in labels.CITYSCAPES_19]
IGNORED_IDS = [0, 1, 3, 6, 9, 10, 14, 15, 29, 30]


def _make_case(root: Path) -> tuple[list[str], list[str], ConfusionMatrix]:
    """Ground truth in Cityscapes layout, predictions via our writer, and our confusion."""
    rng = np.random.default_rng(0)
    train_ids = labels.train_id_to_label_id(19)
    lut = labels.cityscapes_id_lut(19)
    train, motorcycle = labels.train_id("train", 19), labels.train_id("motorcycle", 19)
    in_ground_truth = [cid for cid in EVALUATED_IDS if cid not in (train_ids[train], train_ids[motorcycle])]
    ours = ConfusionMatrix(19)
    gt_files, pred_files = [], []
    for i, (height, width) in enumerate([(32, 64), (24, 40), (32, 64)]):
        # Ground truth: mostly evaluated classes, some ignored ids; never "train"
        # nor "motorcycle".
        gt = rng.choice(in_ground_truth + IGNORED_IDS, size=(height, width)).astype(np.uint8)
        gt_train = lut[gt]
        # Prediction: right on ~60% of the pixels, random elsewhere, and "train"
        # predicted on a few pixels (absent from the ground truth -> IoU 0);
        # "motorcycle" is never predicted (absent from both -> NaN).
        pred = np.where(gt_train == 255, rng.integers(0, 19, size=gt.shape), gt_train)
        noise = rng.random(gt.shape) < 0.4
        pred = np.where(noise, rng.integers(0, 19, size=gt.shape), pred).astype(np.uint8)
        pred[pred == motorcycle] = 0
        pred[0, :5] = train

        stem = f"{CITY}_000000_{i:06d}"
        gt_path = root / "gtFine" / "val" / CITY / f"{stem}_gtFine_labelIds.png"
        gt_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(gt).save(gt_path)
        pred_path = save_label_ids(root / "results" / f"{stem}_leftImg8bit.png", pred, 19)
        gt_files.append(str(gt_path))
        pred_files.append(str(pred_path))
        ours.update(torch.from_numpy(pred).long(), torch.from_numpy(gt_train).long())
    return pred_files, gt_files, ours


def test_miou_matches_cityscapesscripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pred_files, gt_files, ours = _make_case(tmp_path)
    args = official.args
    monkeypatch.setattr(args, "quiet", True)
    monkeypatch.setattr(args, "JSONOutput", False)
    monkeypatch.setattr(args, "evalInstLevelScore", False)  # needs instanceIds files
    monkeypatch.setattr(args, "evalPixelAccuracy", False)
    monkeypatch.setattr(args, "colorized", False)
    theirs = official.evaluateImgLists(pred_files, gt_files, args)

    our_iou = dict(zip(labels.class_names(19), ours.iou().tolist(), strict=True))
    for name, value in our_iou.items():
        reference = theirs["classScores"][name]
        assert (math.isnan(value) and math.isnan(reference)) or abs(value - reference) < 1e-9, name
    assert math.isnan(our_iou["motorcycle"])
    assert our_iou["train"] == 0.0
    assert ours.miou() == pytest.approx(theirs["averageScoreClasses"], abs=1e-6)
