"""End-to-end training benchmark (``tufl benchmark train --end-to-end``), shrunken to run in seconds.

The real Trainer runs over generated GTA5/Cityscapes files; the data wait it reports is
checked against a known delay planted in the loading, and ``--compare`` against the
settings each side must have run with (which prepared copies and strong-view place the
trainer really used, not what was asked).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from tufl.bench import e2e_bench, e2e_run
from tufl.cli import benchmark as command
from tufl.data.samples import SourceSamples

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs/gta5_cityscapes/bisenet_stage1.yaml")  # ResNet-18: the fastest shipped network
SMALL = ["--config", CONFIG, "--size-divisor", "32", "--images", "2", "--workers", "0", "--device", "cpu"]
DELAY = 0.3  # seconds planted in every source sample


def _benchmark(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(["train", "--end-to-end", *argv]))


def test_slow_loading_is_measured_as_data_wait_and_bounds_the_run(tmp_path, monkeypatch):
    data = tmp_path / "data"
    roots = e2e_bench.generate_data(data, ["gta5", "cityscapes"], images=2, size_divisor=32)
    assert (roots["gta5"] / "images" / "00002.png").is_file()
    original = SourceSamples.__getitem__

    def slow(self, key):
        time.sleep(DELAY)
        return original(self, key)

    monkeypatch.setattr(SourceSamples, "__getitem__", slow)  # workers 0: loading runs in this process
    row = e2e_run.run_single("slow source", CONFIG, [], data, "cpu", warmup=1, iters=2, workers=0, size_divisor=32)
    # batch 2 per domain: two delayed source samples per iteration, all inside next(loader)
    assert row["data_wait_per_iter"] >= 2 * DELAY
    assert row["seconds_per_iter"] > row["data_wait_per_iter"]
    assert row["iters_per_second"] == pytest.approx(1 / row["seconds_per_iter"])
    assert row["data_wait_share"] == pytest.approx(row["data_wait_per_iter"] / row["seconds_per_iter"])
    assert row["bound"] == "data"
    assert row["crop"] == [40, 20] and row["workers"] == 0 and row["device"] == "cpu"
    assert row["strong_view_used"] == "worker"  # "auto" on the CPU


def test_compare_runs_before_and_after_side_by_side(tmp_path, capsys):
    rows_file = tmp_path / "rows.json"
    code = _benchmark([*SMALL, "--compare", "--warmup", "1", "--iters", "1", "--out-dir", str(tmp_path),
                       "--json", str(rows_file)])
    out = capsys.readouterr().out
    assert code == 0, out
    before, after = json.loads(rows_file.read_text())
    assert before["pipeline"].startswith("before") and after["pipeline"].startswith("after")
    assert before["prepared_used"] == {"source": False, "target": False} and before["strong_view_used"] == "worker"
    assert after["prepared_used"] == {"source": True, "target": True} and after["strong_view_used"] == "device"
    assert len(list((tmp_path / "prepared").glob("*/manifest.json"))) == 2  # one copy per domain
    for row in (before, after):
        assert row["iters_per_second"] > 0 and row["seconds_per_iter"] > 0
        assert 0 <= row["data_wait_share"] < 1 and row["bound"] in ("data", "step")
    table = [line for line in out.splitlines() if line.startswith(("| before", "| after"))]
    assert len(table) == 2 and "after/before:" in out


def test_a_config_with_data_it_cannot_generate_is_refused(capsys):
    crosscity = str(REPO / "configs/cityscapes_crosscity/bisenet_stage1.yaml")
    code = _benchmark(["--config", crosscity, "--size-divisor", "32", "--images", "2", "--workers", "0",
                       "--device", "cpu"])
    assert code == 2 and "generates" in capsys.readouterr().err


def test_before_src_runs_the_child_file_by_path_against_that_package(tmp_path, capsys):
    # the package here stands in for an older checkout: the run file is loaded by path, its tufl from --before-src
    rows_file = tmp_path / "rows.json"
    code = _benchmark([*SMALL, "--compare", "--before-src", str(REPO / "src"), "--warmup", "1", "--iters", "1",
                       "--out-dir", str(tmp_path), "--json", str(rows_file)])
    assert code == 0, capsys.readouterr().err
    before, after = json.loads(rows_file.read_text())
    assert before["pipeline"] == f"before: original files, worker views (code in {REPO / 'src'})"
    assert before["config"] == CONFIG  # the tree holding that src has the same config file
    assert before["prepared_used"] == {"source": False, "target": False}
    assert after["prepared_used"] == {"source": True, "target": True}
