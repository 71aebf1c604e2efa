"""The seed table: mean and sample standard deviation against hand-computed values."""

from __future__ import annotations

import json
import math

import pytest

from tufl.evaluation.seeds import RunResult, aggregate, format_markdown, result_from_record, table_to_dict


def _run(label: str, miou: float, **iou: float | None) -> RunResult:
    return RunResult(label=label, seed=int(label[-1]), iteration=40, miou=miou, iou=iou)


THREE = [
    _run("s0", 0.40, road=0.2, bus=0.3, train=None),
    _run("s1", 0.50, road=0.4, bus=None, train=None),
    _run("s2", 0.60, road=0.9, bus=0.5, train=None),
]


def test_mean_and_sample_std_by_hand_with_absent_classes():
    table = aggregate(THREE)
    # mIoU 0.4, 0.5, 0.6: mean 0.5; squared deviations 0.01 + 0 + 0.01 over n - 1 = 2 -> std 0.1
    # (the population std, sqrt(0.02 / 3) = 0.0816, would fail this)
    assert table.miou.mean == pytest.approx(0.5, abs=1e-12)
    assert table.miou.std == pytest.approx(0.1, abs=1e-12)
    assert table.miou.n == 3 and table.miou.absent_in == ()
    # road 0.2, 0.4, 0.9: mean 0.5; 0.09 + 0.01 + 0.16 = 0.26 over 2 -> sqrt(0.13)
    assert table.iou["road"].mean == pytest.approx(0.5, abs=1e-12)
    assert table.iou["road"].std == pytest.approx(math.sqrt(0.13), abs=1e-12)
    # bus absent in s1: left out -> 0.3, 0.5: mean 0.4, std sqrt(0.01 + 0.01) over 1
    bus = table.iou["bus"]
    assert (bus.mean, bus.n, bus.absent_in) == (pytest.approx(0.4, abs=1e-12), 2, ("s1",))
    assert bus.std == pytest.approx(math.sqrt(0.02), abs=1e-12)
    # train absent everywhere: no mean, no std
    train = table.iou["train"]
    assert (train.mean, train.std, train.n, train.absent_in) == (None, None, 0, ("s0", "s1", "s2"))


def test_markdown_and_json_show_the_numbers_and_mark_absent_classes():
    table = aggregate(THREE)
    text = format_markdown(table, "job")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ")}
    assert rows["road"] == ["20.00", "40.00", "90.00", f"50.00 ± {100 * math.sqrt(0.13):.2f}"]
    assert rows["bus"] == ["30.00", "absent", "50.00", f"40.00 ± {100 * math.sqrt(0.02):.2f} *"]
    assert rows["train"] == ["absent", "absent", "absent", "absent"]
    assert rows["**mIoU**"] == ["**40.00**", "**50.00**", "**60.00**", "**50.00 ± 10.00**"]
    assert "n - 1" in text and "* absent" in text
    plain = json.loads(json.dumps(table_to_dict(table), allow_nan=False))
    assert plain["miou"]["std"] == pytest.approx(0.1, abs=1e-12)
    assert plain["iou"]["train"] == {"mean": None, "std": None, "n": 0, "absent_in": ["s0", "s1", "s2"]}
    assert [r["miou"] for r in plain["runs"]] == [0.4, 0.5, 0.6]


def test_a_single_seed_has_its_value_as_mean_and_no_std():
    table = aggregate([_run("s7", 0.41, road=0.8, bus=None)])
    assert (table.miou.mean, table.miou.std, table.miou.n) == (0.41, None, 1)
    assert table.iou["road"].std is None and table.iou["bus"].mean is None
    assert "**41.00 ± n/a**" in format_markdown(table)


def test_records_with_null_or_nan_iou_and_refused_inputs():
    record = {"iter": 20, "kind": "val", "miou": 0.25, "iou": {"road": 0.5, "bus": None, "train": float("nan")}}
    run = result_from_record(record, "seed_0", 0)
    assert run.iou == {"road": 0.5, "bus": None, "train": None} and run.iteration == 20
    with pytest.raises(ValueError, match="no miou"):
        result_from_record({"iter": 1, "kind": "val"}, "seed_0")
    with pytest.raises(ValueError, match="other classes"):
        aggregate([_run("s0", 0.1, road=0.1), _run("s1", 0.1, bus=0.1)])
    with pytest.raises(ValueError, match="no runs"):
        aggregate([])
