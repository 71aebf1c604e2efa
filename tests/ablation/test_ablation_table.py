"""The ablation table's statistics on run folders written by hand: mean and sample std per
row, the paired difference over the seeds both rows finished, failed runs kept."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from tufl.ablation.chart import Bar, bar_chart_svg, nice_ticks
from tufl.ablation.execute import Outcome
from tufl.ablation.grid import Row
from tufl.ablation.output import markdown, write_outputs
from tufl.ablation.plan import Plan, RunSpec
from tufl.ablation.table import build_table

# row -> seed -> mIoU (None: the run failed); the seeds shift both rows alike
MIOU = {"base": {0: 0.40, 1: 0.50, 2: 0.70}, "x": {0: 0.42, 1: None, 2: 0.72}, "dead": {0: None, 1: None, 2: None}}


def _run_folder(folder: Path, seed: int, miou: float) -> None:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"experiment: {{seed: {seed}}}\n")
    record = {"iter": 10, "kind": "val", "miou": miou, "iou": {"road": miou + 0.1, "car": miou - 0.1, "bus": None}}
    lines = [{"iter": 10, "kind": "train", "loss": 1.0}, {"iter": 5, "kind": "val", "miou": 0.0, "iou": {}}, record]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.fixture
def table(tmp_path):
    specs, outcomes = {}, {}
    for row, values in MIOU.items():
        for seed, miou in values.items():
            key = f"{row}/seed_{seed}"
            specs[key] = RunSpec(key, "stage1", seed, tmp_path / "c.yaml", (), tmp_path / key, row=row)
            if miou is None:
                outcomes[key] = Outcome("failed", 1, 1.0, "exit status 1: error: non-finite loss")
            else:
                _run_folder(tmp_path / key, seed, miou)
                outcomes[key] = Outcome("trained", 0, 1.0)
    plan = Plan(specs, tuple(Row(name) for name in MIOU), (0, 1, 2), "stage1")
    return build_table(plan, outcomes, "base", "hand-made")


def test_rows_are_the_mean_and_sample_std_of_their_finished_seeds(table):
    base, x, dead = table.rows
    assert base.miou.mean == pytest.approx(statistics.fmean([0.4, 0.5, 0.7]))
    assert base.miou.std == pytest.approx(statistics.stdev([0.4, 0.5, 0.7])) and base.miou.n == 3
    assert x.miou.mean == pytest.approx(0.57) and x.miou.std == pytest.approx(statistics.stdev([0.42, 0.72]))
    assert x.iou["road"].mean == pytest.approx(0.67) and x.iou["bus"].n == 0
    assert table.class_names == ("road", "car", "bus")
    assert (base.status, x.status, dead.status) == ("ok", "partial", "failed")


def test_the_paired_difference_pairs_seeds_not_means(table):
    _, x, dead = table.rows
    # seeds 0 and 2 finished in both rows: differences 0.02 and 0.02; the unpaired difference of
    # the means (0.57 - 0.5333) and its std would be something else
    assert x.paired.seeds == (0, 2) and x.paired.differences == pytest.approx((0.02, 0.02))
    assert x.paired.miou.mean == pytest.approx(0.02) and x.paired.miou.std == pytest.approx(0.0, abs=1e-12)
    assert x.paired.miou.n == 2 and x.paired.iou["road"].mean == pytest.approx(0.02)
    assert dead.paired.miou.n == 0 and dead.paired.miou.mean is None


def test_failed_runs_are_shown_not_dropped(table, tmp_path):
    text = markdown(table)
    assert "| dead | - | failed | 0 | - | 0/3 finished (seed 0 failed, seed 1 failed, seed 2 failed) |" in text
    assert "| x | - | 57.00 ± 21.21 | 2 | +2.00 ± 0.00 (n=2) | 2/3 finished (seed 1 failed) |" in text
    assert "- x seed 1: failed: exit status 1: error: non-finite loss" in text
    page = write_outputs(table, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "table.json").read_text())
    assert [r["status"] for r in saved["rows"][2]["runs"]] == ["failed"] * 3
    assert "failed" in (tmp_path / "out" / "chart_miou.svg").read_text() and "dead" in page.read_text()


def test_the_chart_draws_a_bar_and_whisker_per_row():
    svg = bar_chart_svg([Bar("a", 40.0, 2.0, highlight=True), Bar("b", -1.5, 0.5), Bar("c", None)], "t", "y")
    assert svg.count("<rect") == 3 and svg.count("<line") >= 6 + 2  # background + 2 bars; 2 whiskers x 3 lines
    assert "40.00 ± 2.00" in svg and "-1.50 ± 0.50" in svg and ">failed<" in svg
    assert nice_ticks(-1.9, 42.0)[0] <= -1.9 and nice_ticks(-1.9, 42.0)[-1] >= 42.0
    assert nice_ticks(0.0, 0.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
