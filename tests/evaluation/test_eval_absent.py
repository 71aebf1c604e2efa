"""Evaluation on a folder dataset: hand-computed IoUs, classes absent from the ground truth
reported as absent (never NaN) and left out of the mean, class names and colours from the file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from own_data import write_class_file, write_label
from PIL import Image
from torch import Tensor, nn

from tufl.data.registry import build_dataset
from tufl.data.loader import eval_loader
from tufl.data.samples import EvalSamples
from tufl.evaluation.evaluate import evaluate
from tufl.evaluation.metrics import ConfusionMatrix, EvalResult
from tufl.evaluation.report import format_table, write_csv, write_json
from tufl.models.segmentor import SegOutput

C = 5
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)  # -> classes 0, 1, 2


class ColourNet(nn.Module):
    """Per pixel, the class (0..2) whose colour channel is brightest; classes 3, 4 never win."""

    def forward(self, images: Tensor) -> SegOutput:
        rgb = 10.0 * images.float() / 255.0
        return SegOutput(torch.cat([rgb, torch.full((rgb.shape[0], C - 3, *rgb.shape[-2:]), -10.0)], dim=1))


def _write_case(root):
    # image 1: predicted [0, 0, 1, 2], labels road, vehicle, vehicle, ignore (raw 10, 20, 20, 0)
    # image 2: predicted [2, 2, 0, 1], labels person, person, road, road (raw 30, 30, 11, 10)
    cases = {"one": ([0, 0, 1, 2], [10, 20, 20, 0]), "two": ([2, 2, 0, 1], [30, 30, 11, 10])}
    for stem, (pred, raw) in cases.items():
        (root / "img").mkdir(parents=True, exist_ok=True)
        Image.fromarray(COLOURS[np.array([pred])]).save(root / "img" / f"{stem}.png")
        write_label(root / "gt" / f"{stem}.png", np.array([raw]), "palette")


def test_folder_evaluation_matches_the_hand_computed_iou(tmp_path):
    _write_case(tmp_path)
    classes = write_class_file(tmp_path / "classes.yaml")
    dataset = build_dataset("folder", str(tmp_path), "val", 5, images=("img",), labels="gt", classes=str(classes))
    result = evaluate(ColourNet(), eval_loader(EvalSamples(dataset), 1, 0), C, "cpu", progress=False,
                      save_dir=tmp_path / "pred")
    # road: TP 2, FP 1 (vehicle pixel), FN 1 (predicted vehicle) -> 2/4; vehicle: TP 1, FP 1, FN 1 -> 1/3;
    # person: 2/2; sky and building: no ground truth -> absent.
    assert result.class_names == ("road", "vehicle", "person", "sky", "building")
    assert result.iou[:3] == pytest.approx((0.5, 1 / 3, 1.0))
    assert result.present == (True, True, True, False, False)
    assert result.absent_classes == ("sky", "building")
    assert result.miou == pytest.approx((0.5 + 1 / 3 + 1.0) / 3)

    table = format_table(result)
    assert [line.split()[-1] for line in table.splitlines()[2:7]] == ["50.00", "33.33", "100.00", "absent", "absent"]
    assert "nan" not in table.lower() and "absent: 2 classes" in table
    content = json.loads(write_json(result, tmp_path / "r.json").read_text())
    assert content["iou"]["sky"] is None and content["iou"]["building"] is None
    assert content["iou"]["vehicle"] == pytest.approx(1 / 3) and content["absent_classes"] == ["sky", "building"]
    rows = dict(line.split(",") for line in write_csv(result, tmp_path / "r.csv").read_text().splitlines())
    assert rows["iou/sky"] == "absent" and float(rows["miou"]) == pytest.approx(result.miou)
    # colour predictions in the class file's colours (road [128, 64, 128], person [220, 20, 60])
    colour = np.asarray(Image.open(tmp_path / "pred" / "color" / "000001.png"))
    assert colour[0, 0].tolist() == [220, 20, 60] and colour[0, 2].tolist() == [128, 64, 128]


def test_absent_but_predicted_class_is_absent_and_cityscapes_mean_is_kept_on_the_matrix():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 1, 1]))
    result = EvalResult.from_confusion(cm, class_names=("a", "b", "c"))
    assert result.absent_classes == ("c",) and math.isnan(result.iou[2])
    assert result.miou == pytest.approx((1.0 + 2 / 3) / 2)  # over the present classes
    assert cm.miou() == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)  # cityscapesscripts convention
    # Without a class file (default names: the Cityscapes sets) the cityscapesscripts mean is kept.
    cs = EvalResult.from_confusion(cm)
    assert cs.absent_classes == ("class_2",) and cs.iou[2] == 0.0 and cs.miou == pytest.approx(cm.miou())
    assert "0.00 (absent)" in format_table(cs) and "as cityscapesscripts" in format_table(cs)
    with pytest.raises(ValueError, match="2 class names for a 3-class"):
        EvalResult.from_confusion(cm, class_names=("a", "b"))
