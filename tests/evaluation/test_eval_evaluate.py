"""The evaluation loop, its reports and its command-line options."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from tufl.evaluation.evaluate import evaluate, write_eval_report
from tufl.evaluation.metrics import ConfusionMatrix, EvalResult
from tufl.evaluation.report import format_table
from tufl.models.segmentor import SegOutput

C = 19
# Pure colours the stand-in network classifies exactly: red -> 0, green -> 1, blue -> 2.
COLOURS = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.uint8)


class ColourNet(nn.Module):
    """Per pixel, the class (0..2) whose colour channel is brightest; classes 3..18 never win."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.bn = nn.BatchNorm2d(C)  # only there to show the loop runs in eval mode

    def forward(self, images: Tensor) -> SegOutput:
        rgb = self.scale * images.float() / 255.0
        others = torch.full((rgb.shape[0], C - 3, *rgb.shape[-2:]), -10.0)
        logits = self.bn(torch.cat([rgb, others], dim=1))
        if self.training:
            return SegOutput(logits, (logits,))
        return SegOutput(logits)


def _paint(class_map: Tensor) -> Tensor:
    """[B, H, W] class ids -> [B, 3, H, W] uint8 images of the class colours."""
    return COLOURS[class_map].permute(0, 3, 1, 2).contiguous()


def _loader() -> tuple[list[dict[str, Tensor]], ConfusionMatrix]:
    """Two batches at label resolution, and the confusion counted independently."""
    g = torch.Generator().manual_seed(0)
    batches, expected = [], ConfusionMatrix(C)
    for b in range(2):
        pred = torch.randint(0, 3, (2, 6, 8), generator=g)
        label = torch.where(torch.rand(2, 6, 8, generator=g) < 0.7, pred, torch.randint(0, C, (2, 6, 8), generator=g))
        label[:, 0, :2] = 255
        batches.append({"image": _paint(pred), "label": label, "index": torch.tensor([2 * b, 2 * b + 1])})
        expected.update(pred, label)
    return batches, expected


def test_evaluate_counts_every_pixel_against_its_label(tmp_path: Path) -> None:
    loader, expected = _loader()
    model = ColourNet().train()
    result = evaluate(model, loader, C, "cpu", progress=False, save_dir=tmp_path / "pred")
    assert model.training  # mode restored
    assert torch.equal(result.confusion, expected.matrix)
    assert result.miou == pytest.approx(expected.miou(), abs=1e-12)
    assert result.num_images == 4
    assert result.settings == {"scales": [1.0], "flip": False, "window": None, "stride": None, "amp": False}
    # Saved predictions, named by index, read back as the predicted classes.
    first_pred = loader[0]["image"][1].argmax(0)  # the painted channel is the class
    with Image.open(tmp_path / "pred" / "trainid" / "000001.png") as png:
        assert np.array_equal(np.asarray(png), first_pred.numpy())
    assert (tmp_path / "pred" / "color" / "000003.png").is_file()


def test_prediction_is_upsampled_to_the_full_resolution_label() -> None:
    # Image 4x4 in four colour quadrants; label at 8x8. A uniform image would be
    # trivial, so each quadrant must land on its own 4x4 label block.
    classes = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1], [2, 2, 1, 1]])
    label = classes.repeat_interleave(2, 0).repeat_interleave(2, 1)[None].clone()
    label[0, 7, 7] = 0  # a class-1 pixel relabelled 0: predicted 1, labelled 0
    label[0, 0, 0] = 255
    batch = {"image": _paint(classes[None]), "label": label, "index": torch.tensor([0])}
    result = evaluate(ColourNet(), [batch], C, "cpu", progress=False)
    # Bilinear x2 upsampling weighs the nearest input pixel 0.75 (or more) per
    # axis, so the argmax is the quadrant class of each 2x2 block. Label blocks:
    # class 0: 16 pixels - 1 ignored; class 1: 32 - 1 relabelled 0; class 2: 16.
    matrix = result.confusion.tolist()
    assert sum(map(sum, matrix)) == 63
    assert matrix[0][:3] == [15, 1, 0]
    assert matrix[1][:3] == [0, 31, 0]
    assert matrix[2][:3] == [0, 0, 16]


def test_malformed_batches_are_rejected() -> None:
    batch = {"image": _paint(torch.zeros(1, 4, 4, dtype=torch.long)), "label": torch.zeros(1, 4, 4).long()[0]}
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        evaluate(ColourNet(), [batch], C, "cpu", progress=False)
    with pytest.raises(TypeError, match="'image'"):
        evaluate(ColourNet(), [{"label": torch.zeros(1, 4, 4).long()}], C, "cpu", progress=False)


def test_eval_report_names_the_checkpoint(tmp_path: Path) -> None:
    loader, _ = _loader()
    result = evaluate(ColourNet(), loader, C, "cpu", progress=False)
    checkpoint = tmp_path / "run" / "best.pt"
    checkpoint.parent.mkdir()
    csv_path, json_path = write_eval_report(result, None, checkpoint, "best", {"dataset": "toy"})
    assert csv_path == checkpoint.parent / "eval_best.csv"
    data = json.loads(json_path.read_text())
    assert data["checkpoint"] == str(checkpoint) and data["checkpoint_kind"] == "best"
    assert data["dataset"] == "toy" and data["num_images"] == 4
    assert data["miou"] == pytest.approx(result.miou)
    assert data["confusion_matrix"] == result.confusion.tolist()
    with csv_path.open() as f:
        rows = dict(csv.reader(f))
    assert rows["checkpoint"] == str(checkpoint) and rows["checkpoint_kind"] == "best"
    assert float(rows["miou"]) == pytest.approx(result.miou, abs=1e-8)
    assert float(rows["iou/building"]) == pytest.approx(result.iou[2], abs=1e-8)
    with pytest.raises(ValueError, match="checkpoint_kind"):
        write_eval_report(result, tmp_path, checkpoint, "latest")  # type: ignore[arg-type]


def test_format_table_lists_classes_and_scores() -> None:
    cm = ConfusionMatrix(16)
    cm.update(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]))
    result = EvalResult.from_confusion(cm)
    table = format_table(result, title="toy")
    lines = table.splitlines()
    assert lines[0] == "toy"
    assert any(line.startswith("road") and line.endswith("50.00") for line in lines)
    assert any(line.startswith("sidewalk") and line.endswith("50.00") for line in lines)
    assert any(line.startswith("bicycle") and line.endswith("absent") for line in lines)
    assert any(line.startswith("mIoU*") and line.endswith("50.00") for line in lines)
    assert math.isnan(result.iou[-1])


def test_command_line_options_override_the_eval_section() -> None:
    from tufl.cli.evaluate import add_arguments, inference_options
    from tufl.evaluation.options import EvalConfig

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    section = EvalConfig(scales=(1.0, 1.5), window=(64, 64), stride=(32, 32), batch_size=3)
    args = parser.parse_args(["--checkpoint", "c.pt", "--scales", "0.5", "1.0", "--flip", "--window", "512", "1024",
                              "--stride", "256", "512", "--no-amp"])
    assert inference_options(args, section) == EvalConfig(scales=(0.5, 1.0), flip=True, window=(512, 1024),
                                                          stride=(256, 512), amp=False, batch_size=3)
    # no option given: the section as it is; a window alone slides by itself
    assert inference_options(parser.parse_args(["--checkpoint", "c.pt"]), section) == section
    alone = inference_options(parser.parse_args(["--checkpoint", "c.pt", "--window", "8", "8"]), section)
    assert (alone.window, alone.stride, alone.scales) == ((8, 8), (8, 8), (1.0, 1.5))
