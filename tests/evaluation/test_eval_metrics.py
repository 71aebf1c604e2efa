"""Confusion matrix and IoU conventions against hand-computed values."""

from __future__ import annotations

import math
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tufl.data import labels
from tufl.evaluation.metrics import ConfusionMatrix, EvalResult, iou_per_class, mean_iou

NAN = float("nan")


def _cm(pred: list[int], label: list[int], num_classes: int = 3) -> ConfusionMatrix:
    cm = ConfusionMatrix(num_classes)
    cm.update(torch.tensor(pred), torch.tensor(label))
    return cm


def _same(a: list[float], b: list[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or abs(x - y) < 1e-12 for x, y in zip(a, b, strict=True))


def test_perfect_prediction() -> None:
    cm = _cm([0, 1, 1, 2, 2, 2], [0, 1, 1, 2, 2, 2])
    assert cm.iou().tolist() == [1.0, 1.0, 1.0]
    assert cm.miou() == 1.0
    assert cm.pixel_accuracy() == 1.0
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 2, 0], [0, 0, 3]]


def test_one_pixel_wrong() -> None:
    # One class-1 pixel predicted as class 2.
    cm = _cm([0, 0, 1, 2, 2, 2], [0, 0, 1, 1, 2, 2])
    # class 0: 2/2; class 1: tp 1, fn 1 -> 1/2; class 2: tp 2, fp 1 -> 2/3
    assert _same(cm.iou().tolist(), [1.0, 0.5, 2 / 3])
    assert cm.miou() == pytest.approx((1.0 + 0.5 + 2 / 3) / 3, abs=1e-12)
    assert cm.pixel_accuracy() == pytest.approx(5 / 6, abs=1e-12)


def test_class_absent_from_ground_truth() -> None:
    # Class 2 is neither labelled nor predicted: NaN, left out of the mean.
    cm = _cm([0, 1, 1, 0], [0, 1, 1, 1])
    assert _same(cm.iou().tolist(), [0.5, 2 / 3, NAN])
    assert cm.miou() == pytest.approx((0.5 + 2 / 3) / 2, abs=1e-12)
    # Class 2 absent from the ground truth but predicted once: IoU 0, in the mean
    # (the cityscapesscripts convention).
    cm = _cm([0, 1, 1, 2], [0, 1, 1, 1])
    assert _same(cm.iou().tolist(), [1.0, 2 / 3, 0.0])
    assert cm.miou() == pytest.approx((1.0 + 2 / 3 + 0.0) / 3, abs=1e-12)


def test_ignore_pixels_do_not_count_whatever_is_predicted() -> None:
    cm = _cm([0, 1, 2, 2, 0], [0, 1, 255, 255, 255])
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert cm.num_ignored == 3
    assert _same(cm.iou().tolist(), [1.0, 1.0, NAN])
    assert cm.miou() == 1.0


def test_matrix_matches_explicit_counting_loop() -> None:
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 4, (2, 7, 5), generator=g)
    label = torch.randint(0, 5, (2, 7, 5), generator=g)
    label[label == 4] = 255
    expected = [[0] * 4 for _ in range(4)]
    for p, t in zip(pred.flatten().tolist(), label.flatten().tolist(), strict=True):
        if t != 255:
            expected[t][p] += 1
    cm = ConfusionMatrix(4)
    cm.update(pred[:1], label[:1])
    cm.update(pred[1:], label[1:])
    assert cm.matrix.tolist() == expected
    iou = []
    for c in range(4):
        tp = expected[c][c]
        union = sum(expected[c]) + sum(row[c] for row in expected) - tp
        iou.append(tp / union if union else NAN)
    assert _same(cm.iou().tolist(), iou)


def test_merge_equals_joint_update() -> None:
    a, b, joint = ConfusionMatrix(3), ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(torch.tensor([0, 1, 2]), torch.tensor([0, 2, 2]))
    b.update(torch.tensor([1, 1]), torch.tensor([1, 255]))
    joint.update(torch.tensor([0, 1, 2, 1, 1]), torch.tensor([0, 2, 2, 1, 255]))
    a.merge(b)
    assert torch.equal(a.matrix, joint.matrix)
    assert a.num_ignored == 1
    with pytest.raises(ValueError, match="merge"):
        a.merge(ConfusionMatrix(4))


def test_sixteen_class_model_reports_thirteen_class_miou() -> None:
    # Every class twice, both "wall" pixels predicted as "road".
    label = torch.arange(16).repeat_interleave(2)
    pred = label.clone()
    wall, road = labels.train_id("wall", 16), labels.train_id("road", 16)
    pred[label == wall] = road
    cm = ConfusionMatrix(16)
    cm.update(pred, label)
    result = EvalResult.from_confusion(cm, num_images=1)
    # road: tp 2, fp 2 -> 0.5; wall: 0; 14 others: 1.
    assert result.miou == pytest.approx((0.5 + 0.0 + 14) / 16, abs=1e-12)
    # mIoU* drops wall, fence and pole: road 0.5 and 12 perfect classes.
    assert result.miou_13 == pytest.approx((0.5 + 12) / 13, abs=1e-12)
    assert result.class_names == labels.class_names(16)
    assert EvalResult.from_confusion(ConfusionMatrix(19)).miou_13 is None


def test_invalid_inputs_are_reported() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        cm.update(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 7]))  # 7: neither a class nor 255
    with pytest.raises(ValueError, match="1 pixels"):
        _ = cm.matrix
    with pytest.raises(ValueError, match="ignore_index"):
        ConfusionMatrix(3, ignore_index=2)


def test_mean_iou_of_subset_and_all_nan() -> None:
    iou = torch.tensor([0.2, NAN, 0.6, 1.0], dtype=torch.float64)
    assert mean_iou(iou, [0, 1, 2]) == pytest.approx(0.4)
    assert math.isnan(mean_iou(torch.tensor([NAN, NAN])))
    assert math.isnan(float(iou_per_class(torch.zeros(2, 2, dtype=torch.int64))[0]))


def _all_reduce_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        cm = ConfusionMatrix(3)
        if rank == 0:
            cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
        else:
            cm.update(torch.tensor([2, 2, 0]), torch.tensor([2, 255, 0]))
        cm.all_reduce()
        torch.save(cm.matrix, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_over_ranks() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_all_reduce_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        expected = [[2, 0, 0], [0, 1, 1], [0, 0, 1]]
        for rank in range(2):
            assert torch.load(os.path.join(tmp, f"rank{rank}.pt")).tolist() == expected
