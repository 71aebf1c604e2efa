"""``tufl train --seeds``: one run per seed, the table of their spread, resuming a job, and
``tufl evaluate --aggregate`` on the same folders."""

from __future__ import annotations

import dataclasses

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

import runs
from tufl.cli import main
from tufl.runtime.typed_config import ConfigError, dump_config, to_plain
from tufl.train.multi_seed import finished_run, seed_config, train_seeds
from tufl.runtime.run_log import read_metrics

ITERS = 2


def _expected_spread(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std by the textbook formula (n - 1), absent values left out."""
    kept = [v for v in values if v is not None]
    if not kept:
        return None, None
    mean = sum(kept) / len(kept)
    std = math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - 1)) if len(kept) > 1 else None
    return mean, std


def _approx(value: float | None) -> object:
    return None if value is None else pytest.approx(value, abs=1e-12)


def test_multi_seed_run_table_resume_and_aggregate(scene_info, tmp_path, capsys):
    job = tmp_path / "job"
    config = runs.write_yaml(runs.run_tree(scene_info, job, "source_only", ITERS), tmp_path / "job.yaml")
    assert main(["train", "--config", str(config), "--seeds", "0", "1"]) == 0

    seed_dirs = [job / "seed_0", job / "seed_1"]
    finals = [read_metrics(d, "val")[-1] for d in seed_dirs]
    assert [f["iter"] for f in finals] == [ITERS, ITERS]
    for seed, folder in enumerate(seed_dirs):
        assert f"seed: {seed}\n" in (folder / "config.yaml").read_text()
    table = json.loads((job / "seeds.json").read_text())
    assert [r["miou"] for r in table["runs"]] == [f["miou"] for f in finals]
    assert [r["seed"] for r in table["runs"]] == [0, 1]
    mean, std = _expected_spread([f["miou"] for f in finals])
    assert (table["miou"]["mean"], table["miou"]["std"]) == (_approx(mean), _approx(std))
    names = list(finals[0]["iou"])
    assert list(table["iou"]) == names and len(names) == 19
    for name in names:
        mean, std = _expected_spread([f["iou"][name] for f in finals])
        assert (table["iou"][name]["mean"], table["iou"][name]["std"]) == (_approx(mean), _approx(std)), name
    markdown = (job / "seeds.md").read_text()
    assert f"**{100 * table['miou']['mean']:.2f} ± {100 * table['miou']['std']:.2f}**" in markdown

    # A rerun with --resume trains nothing: both seeds finished.
    checkpoints = [(d / "checkpoint_last.pt").stat().st_mtime_ns for d in seed_dirs]
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--seeds", "0", "1", "--resume"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier") == 2 and "run folder" not in out
    assert [(d / "checkpoint_last.pt").stat().st_mtime_ns for d in seed_dirs] == checkpoints
    assert json.loads((job / "seeds.json").read_text()) == table
    # Without --resume the existing seed folders are refused before anything trains.
    assert main(["train", "--config", str(config), "--seeds", "0", "1"]) == 2
    assert "--resume auto" in capsys.readouterr().err

    # The same table from the run folders, from their records and by evaluating their checkpoints.
    assert main(["evaluate", "--aggregate", *map(str, seed_dirs), "--out", str(tmp_path / "agg")]) == 0
    aggregated = json.loads((tmp_path / "agg" / "seeds.json").read_text())
    for key in ("miou", "iou", "num_runs"):
        assert aggregated[key] == table[key], key
    strip = [{k: v for k, v in run.items() if k != "run_dir"} for run in table["runs"]]
    assert [{k: v for k, v in run.items() if k != "run_dir"} for run in aggregated["runs"]] == strip
    # --evaluate: the final checkpoint scores what the run's final validation did (one run: no std)
    assert main(["evaluate", "--aggregate", str(seed_dirs[1]), "--evaluate", "--out", str(tmp_path / "ev")]) == 0
    evaluated = json.loads((tmp_path / "ev" / "seeds.json").read_text())
    assert evaluated["miou"]["mean"] == pytest.approx(finals[1]["miou"], abs=1e-9)
    assert (evaluated["miou"]["std"], evaluated["runs"][0]["seed"]) == (None, 1)
    assert "± n/a**" in (tmp_path / "ev" / "seeds.md").read_text()


# ---------------------------------------------------------------- the job's logic, with a stand-in run


class FakeRuns:
    """Stands in for training: writes what a finished run leaves (run_info, config, a val record)."""

    def __init__(self, statuses: dict[int, int] | None = None) -> None:
        self.statuses = statuses or {}
        self.trained: list[int] = []

    def __call__(self, cfg) -> int:
        seed = cfg.experiment.seed
        self.trained.append(seed)
        status = self.statuses.get(seed, 0)
        root = Path(cfg.experiment.run_dir)
        root.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, root / "config.yaml")
        last = cfg.train.iters if status == 0 else 1
        (root / "run_info.json").write_text(json.dumps({"iterations": cfg.train.iters, "last_iteration": last}))
        if status == 0:
            record = {"iter": last, "kind": "val", "miou": 0.1 * (seed + 1),
                      "iou": {"road": 0.2 * (seed + 1), "bus": None if seed == 1 else 0.5}}
            (root / "metrics.jsonl").write_text(json.dumps(record) + "\n")
        return status


@pytest.fixture
def cfg(scene_info, tmp_path):
    return runs.config(runs.run_tree(scene_info, tmp_path / "job", "source_only", 40))


def test_a_preempted_seed_stops_the_job_and_resume_skips_finished_seeds(cfg, capsys):
    first = FakeRuns({1: 3})
    assert train_seeds(cfg, [0, 1, 2], "auto", first) == 3
    assert first.trained == [0, 1]  # seed 2 never started
    assert not (cfg.experiment.run_dir / "seeds.json").exists()
    assert "seeds not run: 2" in capsys.readouterr().err

    second = FakeRuns()
    assert train_seeds(cfg, [0, 1, 2], "auto", second) == 0
    assert second.trained == [1, 2]  # seed 0 finished: not rerun
    table = json.loads((cfg.experiment.run_dir / "seeds.json").read_text())
    assert [r["label"] for r in table["runs"]] == ["seed_0", "seed_1", "seed_2"]
    assert table["miou"]["mean"] == pytest.approx(0.2) and table["miou"]["std"] == pytest.approx(0.1)
    assert table["iou"]["bus"] == {"mean": 0.5, "std": 0.0, "n": 2, "absent_in": ["seed_1"]}


def test_a_failed_seed_is_left_out_and_sets_the_status(cfg):
    fake = FakeRuns({1: 1})
    assert train_seeds(cfg, [0, 1, 2], "never", fake) == 1
    assert fake.trained == [0, 1, 2]
    table = json.loads((cfg.experiment.run_dir / "seeds.json").read_text())
    assert [r["seed"] for r in table["runs"]] == [0, 2]
    assert table["miou"]["std"] == pytest.approx(statistics.stdev([0.1, 0.3]))
    assert "seed 1: the run failed" in (cfg.experiment.run_dir / "seeds.md").read_text()


def test_a_signal_between_runs_stops_before_the_next_seed(cfg):
    fake = FakeRuns()
    assert train_seeds(cfg, [0, 1], "auto", fake, stop_requested=lambda: "SIGTERM" if fake.trained else None) == 3
    assert fake.trained == [0]


def test_finished_run_by_checkpoint_and_of_another_config(cfg):
    seed_cfg = seed_config(cfg, 4)
    root = seed_cfg.experiment.run_dir
    root.mkdir(parents=True)
    assert finished_run(seed_cfg) is None
    torch.save({"iteration": 39, "config": to_plain(seed_cfg)}, root / "checkpoint_last.pt")
    assert finished_run(seed_cfg) is None  # interrupted: the run resumes it
    torch.save({"iteration": 40, "config": to_plain(seed_cfg)}, root / "checkpoint_last.pt")
    assert finished_run(seed_cfg) == 40
    other = to_plain(seed_cfg)
    other["optim"]["lr"] = 0.5
    torch.save({"iteration": 40, "config": other}, root / "checkpoint_last.pt")
    with pytest.raises(ConfigError, match="optim.lr"):
        finished_run(seed_cfg)
    assert finished_run(seed_cfg, force=True) == 40


def test_without_data_val_the_runs_train_and_nothing_is_aggregated(cfg, capsys):
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val=None))
    fake = FakeRuns()
    assert train_seeds(cfg, [0, 1], "never", fake) == 0
    assert fake.trained == [0, 1]
    assert not (cfg.experiment.run_dir / "seeds.json").exists()
    assert "nothing to aggregate: data.val is not set" in capsys.readouterr().out
