"""Reading run folders for a report (tufl.report.runs, samples): names, checks, classes, times."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tufl.data.labels import class_names, palette
from tufl.report.runs import NotARunError, logged_seconds, model_classes, model_report, open_runs
from tufl.report.samples import spread_indices
from tufl.runtime.errors import BadFileError


def _run(folder: Path, records: list[dict] = (), best: bool = False) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "checkpoint_last.pt").write_bytes(b"weights")
    if best:
        (folder / "checkpoint_best.pt").write_bytes(b"weights")
    return folder


def test_runs_are_named_by_folder_and_by_path_when_names_repeat(tmp_path):
    a, b = _run(tmp_path / "x" / "seed_0"), _run(tmp_path / "y" / "seed_0")
    stage = _run(tmp_path / "x" / "stage1")
    assert [r.label for r in open_runs([a, stage])] == ["seed_0", "stage1"]
    assert [r.label for r in open_runs([a, b])] == ["x/seed_0", "y/seed_0"]
    assert [r.label for r in open_runs([a, b], labels=["one", "two"])] == ["one", "two"]
    with pytest.raises(ValueError, match="given twice"):
        open_runs([a, tmp_path / "x" / "seed_0"])
    with pytest.raises(ValueError, match="labels must be distinct"):
        open_runs([a, b], labels=["one", "one"])


def test_a_folder_that_is_not_a_run_names_what_is_missing(tmp_path):
    only_metrics = tmp_path / "only_metrics"
    only_metrics.mkdir()
    (only_metrics / "metrics.jsonl").write_text("")
    with pytest.raises(NotARunError, match=r"only_metrics: not a tufl run folder: no checkpoint_last\.pt$"):
        open_runs([only_metrics])
    run = _run(tmp_path / "run")
    with pytest.raises(NotARunError, match="no checkpoint_best.pt .* use --checkpoint last"):
        open_runs([run], checkpoint="best")
    assert open_runs([_run(tmp_path / "validated", best=True)], checkpoint="best")[0].checkpoint.name == \
        "checkpoint_best.pt"


def test_scores_come_from_the_last_val_record_with_absent_classes_as_nan(tmp_path):
    names = ("road", "car", "sky")
    records = [
        {"iter": 5, "kind": "train", "loss": 1.0, "elapsed_s": 3.0},
        {"iter": 5, "kind": "val", "miou": 0.1, "iou": {"road": 0.1, "car": 0.1, "sky": 0.1}, "best_miou": 0.1},
        {"iter": 10, "kind": "val", "miou": 0.4, "iou": {"road": 0.5, "car": None, "sky": 0.3}, "best_miou": 0.4},
    ]
    report = model_report(open_runs([_run(tmp_path / "r", records)])[0], names)
    assert report.miou == 0.4 and report.scored_at == 10 and report.best_miou == 0.4
    assert report.iou[0] == 0.5 and math.isnan(report.iou[1]) and report.iou[2] == 0.3
    unvalidated = model_report(open_runs([_run(tmp_path / "u", records[:1])])[0], names)
    assert unvalidated.miou is None and unvalidated.iou is None and not unvalidated.scored
    with pytest.raises(BadFileError, match=r"scores other classes .*train id 1: 'car' scored, 'bus' predicted"):
        model_report(open_runs([tmp_path / "r"])[0], ("road", "bus", "sky"))


def test_training_time_adds_up_the_processes_of_a_resumed_run():
    records = [{"iter": i, "kind": "train", "elapsed_s": s} for i, s in ((10, 5.0), (20, 9.0), (30, 2.0), (40, 6.5))]
    assert logged_seconds(records) == 9.0 + 6.5
    assert logged_seconds([{"iter": 1, "kind": "val", "miou": 0.2}]) is None


def test_classes_fall_back_to_the_cityscapes_set_or_generic_names():
    cityscapes = model_classes({}, 19, "ckpt")
    assert cityscapes.names == class_names(19)
    assert (cityscapes.palette() == palette(19)).all()
    assert model_classes({"num_classes": 16}, 16, "ckpt").names == class_names(16)
    generic = model_classes({}, 4, "ckpt")
    assert generic.names == ("class 0", "class 1", "class 2", "class 3")
    assert len(set(generic.colours)) == 4


def test_samples_are_spread_over_the_split():
    assert spread_indices(60, 6) == [0, 12, 24, 35, 47, 59]
    assert spread_indices(4, 6) == [0, 1, 2, 3]
    assert spread_indices(10, 0) == [] and spread_indices(0, 3) == []
