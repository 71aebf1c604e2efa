"""``tufl ablate`` end to end on tiny scenes: 2 rows x 2 seeds of a 2-iteration stage one,
interrupted by a signal, rerun (the interrupted run resumes, the others start), rerun
again (everything skipped); the table's numbers against the runs' own files."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import runs
from tufl.runtime import checkpoint_files as ckpt
from tufl.runtime.run_log import read_metrics

ITERS = 2
SEEDS = (0, 1)
ROWS = ("a", "b")


def _wait_for(path: Path, text: str, timeout: float = 180.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if path.is_file() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never showed {text!r}")


def _stamps(out: Path) -> dict[str, int]:
    return {f"{row}/{seed}/{name}": (out / row / f"seed_{seed}" / name).stat().st_mtime_ns
            for row in ROWS for seed in SEEDS for name in ("checkpoint_last.pt", "metrics.jsonl")}


@pytest.fixture(scope="module")
def ablation(scene_info, tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("ablate")
    tree = runs.run_tree(scene_info, root / "unused", "stage1", iters=ITERS,
                         train={"checkpoint_every": ITERS, "keep_checkpoints": 1})
    base = runs.write_yaml(tree, root / "base.yaml")
    grid = root / "grid.yaml"
    grid.write_text(yaml.safe_dump({"stage": "stage1", "title": "tiny", "baseline": "a", "rows": [
        {"name": "a", "set": []}, {"name": "b", "set": {"optim.lr": 0.03}}]}))
    out = root / "out"
    command = [sys.executable, "-m", "tufl", "ablate", "--grid", str(grid), "--config", str(base), "--seeds",
               *map(str, SEEDS), "--out", str(out)]
    # 1: stopped by SIGTERM while the first run trains (it checkpoints and exits with status 3)
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(out / "logs" / "a__seed_0.log", "[tufl] run directory")
    first.send_signal(signal.SIGTERM)
    stopped = first.communicate(timeout=180)[0]
    interrupted = json.loads((out / "a" / "seed_0" / "run_info.json").read_text())
    folders_after_stop = sorted(str(p.relative_to(out)) for p in out.glob("*/seed_*"))
    # 2: the rerun resumes it and trains the others; 3: a second rerun finds everything finished
    second = subprocess.run([*command, "--jobs", "2"], capture_output=True, text=True, timeout=600)
    stamps = _stamps(out)
    third = subprocess.run(command, capture_output=True, text=True, timeout=600)
    return SimpleNamespace(out=out, first=first, stopped=stopped, interrupted=interrupted, second=second,
                           third=third, stamps=stamps, folders_after_stop=folders_after_stop)


def test_a_rerun_resumes_the_interrupted_run_and_skips_finished_ones(ablation):
    out = ablation.out
    assert ablation.first.returncode == 3, ablation.stopped
    assert "[ablate] stopped  a seed 0" in ablation.stopped and "rerun the same command" in ablation.stopped
    assert ablation.interrupted["last_iteration"] < ITERS  # stopped mid-run, with its checkpoint
    assert ablation.folders_after_stop == ["a/seed_0"]  # no later run started
    second = ablation.second
    assert second.returncode == 0, second.stdout + second.stderr
    assert "[ablate] resume  a seed 0" in second.stdout and "[ablate] skipped" not in second.stdout
    for label in ("b seed 0", "a seed 1", "b seed 1"):
        assert f"[ablate] start   {label}" in second.stdout and f"[ablate] finished {label}" in second.stdout
    # the resumed run continued from its checkpoint: each iteration logged once, then the final validation
    records = read_metrics(out / "a" / "seed_0")
    assert [r["iter"] for r in records if r["kind"] == "train"] == list(range(1, ITERS + 1))
    assert [r["iter"] for r in records if r["kind"] == "val"] == [ITERS]
    third = ablation.third
    assert third.returncode == 0, third.stdout + third.stderr
    assert third.stdout.count("[ablate] skipped ") == len(ROWS) * len(SEEDS)
    for verb in ("start ", "resume ", "finished ", "FAILED "):
        assert f"[ablate] {verb}" not in third.stdout
    assert _stamps(out) == ablation.stamps  # not trained again: checkpoints and logs untouched
    for row in ROWS:
        for seed in SEEDS:
            state = ckpt.load_checkpoint(out / row / f"seed_{seed}" / "checkpoint_last.pt")
            assert state["iteration"] == ITERS and state["config"]["experiment"]["seed"] == seed


def _final(out: Path, row: str, seed: int) -> dict:
    """The run's final validation record, read from its metrics.jsonl by hand."""
    lines = (out / row / f"seed_{seed}" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if json.loads(line)["kind"] == "val"][-1]


def test_the_table_is_the_mean_and_sample_std_of_the_runs_records(ablation):
    out = ablation.out
    table = json.loads((out / "table.json").read_text())
    assert [row["name"] for row in table["rows"]] == list(ROWS) and table["seeds"] == list(SEEDS)
    for row in table["rows"]:
        finals = [_final(out, row["name"], seed) for seed in SEEDS]
        mious = [f["miou"] for f in finals]
        assert row["status"] == "ok" and row["miou"]["n"] == 2
        assert row["miou"]["mean"] == pytest.approx(statistics.fmean(mious), abs=1e-12)
        assert row["miou"]["std"] == pytest.approx(statistics.stdev(mious), abs=1e-12)  # n - 1
        assert [r["miou"] for r in row["runs"]] == mious
        for name, spread in row["iou"].items():
            values = [f["iou"][name] for f in finals if f["iou"][name] is not None]
            assert spread["n"] == len(values)
            if values:
                assert spread["mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
            if len(values) > 1:
                assert spread["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
    markdown = (out / "table.md").read_text()
    a = table["rows"][0]["miou"]
    assert f"| a | - | {100 * a['mean']:.2f} ± {100 * a['std']:.2f} | 2 | baseline |" in markdown
    page = (out / "index.html").read_text()
    assert "<svg" in page and (out / "chart_miou.svg").read_text().startswith("<svg")


def test_the_paired_difference_is_the_mean_of_per_seed_differences(ablation):
    out = ablation.out
    table = json.loads((out / "table.json").read_text())
    b = table["rows"][1]
    differences = [_final(out, "b", s)["miou"] - _final(out, "a", s)["miou"] for s in SEEDS]
    paired = b["vs_baseline"]
    assert paired["baseline"] == "a" and paired["n"] == 2 and paired["seeds"] == list(SEEDS)
    assert paired["differences"] == pytest.approx(differences, abs=1e-12)
    assert paired["mean"] == pytest.approx(statistics.fmean(differences), abs=1e-12)
    assert paired["std"] == pytest.approx(statistics.stdev(differences), abs=1e-12)
    assert "vs_baseline" not in table["rows"][0]
    assert f"{100 * paired['mean']:+.2f} ± {100 * paired['std']:.2f} (n=2)" in (out / "table.md").read_text()
