"""Grid files and run plans of ``tufl ablate``: validation before anything runs, the shipped
grids, and the sharing of earlier-stage runs between rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import runs
from tufl.ablation.grid import GridError, parse_grid
from tufl.ablation.job import AblationOptions, prepare
from tufl.cli import main
from tufl.runtime.typed_config import to_plain

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "configs" / "ablations").glob("*.yaml"))
RUNNER_KEYS = ("experiment.output_dir", "experiment.seed", "model.pretrained")


def _grid(path: Path, rows: list[dict], **top) -> Path:
    path.write_text(yaml.safe_dump({**top, "rows": rows}))
    return path


@pytest.fixture
def stage1_config(scene_info, tmp_path) -> Path:
    return runs.write_yaml(runs.run_tree(scene_info, tmp_path / "unused", "stage1"), tmp_path / "stage1.yaml")


def test_rows_with_an_unknown_key_or_a_refused_value_stop_everything_naming_row_and_key(
        stage1_config, tmp_path, capsys):
    grid = _grid(tmp_path / "grid.yaml", [
        {"name": "good", "set": ["optim.lr=0.02"]},
        {"name": "bad_key", "set": ["loss.tufl.gama=1"]},
        {"name": "bad_value", "set": {"mix.p_longtail": 2}},
        {"name": "owns_seed", "set": ["experiment.seed=4"]},
    ])
    out = tmp_path / "out"
    status = main(["ablate", "--grid", str(grid), "--config", str(stage1_config), "--seeds", "0", "1",
                   "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    lines = err.splitlines()
    assert any("row 'bad_key'" in line and "loss.tufl.gama" in line and "unknown key" in line for line in lines), err
    assert any("row 'bad_value'" in line and "mix.p_longtail" in line for line in lines), err
    assert any("row 'owns_seed'" in line and "experiment.seed" in line for line in lines), err
    assert "row 'good'" not in err and "nothing was run" in err
    assert not out.exists()  # nothing created, nothing run


def test_grid_file_mistakes_are_reported_with_their_row(tmp_path):
    grid = _grid(tmp_path / "grid.yaml", [{"name": "a", "sett": ["optim.lr=1"]}, {"name": "a"},
                                          {"name": "b", "set": ["stage3:optim.lr=1", "optim.lr"]}],
                 baseline="nobody")
    with pytest.raises(GridError) as caught:
        parse_grid(grid)
    text = str(caught.value)
    assert "row 'a': unknown key sett" in text and "repeated: a" in text
    assert "row 'b': set: 'stage3:optim.lr=1': unknown stage 'stage3'" in text
    assert "row 'b': set: 'optim.lr': expected KEY=VALUE" in text and "baseline: 'nobody' is not a row" in text


@pytest.mark.parametrize("grid_path", SHIPPED, ids=[p.stem for p in SHIPPED])
@pytest.mark.parametrize("scale", ["full", "demo"])
def test_every_shipped_grid_validates_against_its_base_config(grid_path, scale, tmp_path):
    out = tmp_path / "out"
    grid, setup, plan, baseline = prepare(AblationOptions(grid_path, out, scale=scale))
    assert baseline == "authors" and grid.rows[0].name == "authors"
    assert setup.stage == grid.stage and grid.stage in setup.chain
    assert not out.exists()
    base = to_plain(plan.row_runs(baseline)[0].cfg)
    for row in grid.rows:
        specs = plan.row_runs(row.name)
        assert sorted(specs) == [0, 1, 2]
        if row.name == baseline:
            continue
        # every row flips something of its run (or of the run it starts from) against the baseline's
        mine = to_plain(specs[0].cfg)
        changed = _differences(base, mine) or _differences(
            to_plain(plan.runs[plan.row_runs(baseline)[0].parent].cfg), to_plain(plan.runs[specs[0].parent].cfg))
        assert changed, f"row {row.name} trains the same config as the baseline"


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out += _differences(a[key], b[key], path + ".")
        elif a.get(key) != b.get(key) and path not in RUNNER_KEYS:
            out.append(path)
    return out


def test_rows_share_the_earlier_stage_they_train_alike(scene_info, tmp_path):
    stage1 = runs.write_yaml(runs.run_tree(scene_info, tmp_path / "u1", "stage1"), tmp_path / "stage1.yaml")
    stage2 = runs.write_yaml(runs.run_tree(scene_info, tmp_path / "u2", "stage2", model={"pretrained": "s1.pt"}),
                             tmp_path / "stage2.yaml")
    grid = _grid(tmp_path / "grid.yaml", [
        {"name": "authors"}, {"name": "dual", "set": ["mix.mode=dual_soft"]},
        {"name": "own_stage1", "set": ["stage1:optim.lr=0.02"]}, {"name": "stage1_only", "stage": "stage1"},
    ], stage="stage2")
    out = tmp_path / "out"
    _, setup, plan, _ = prepare(AblationOptions(grid, out, seeds=(0, 1), config=str(stage2),
                                                before=(f"stage1={stage1}",)))
    assert setup.chain == ("stage1", "stage2")
    assert len(plan.runs) == 2 * 5  # per seed: 2 stage-one runs, 3 stage-two runs
    for seed in (0, 1):
        shared = plan.row_runs("stage1_only")[seed]  # the row measuring stage one is the run the others start from
        assert shared.run_dir == out / "stage1_only" / f"seed_{seed}" and shared.parent is None
        for row in ("authors", "dual"):
            spec = plan.row_runs(row)[seed]
            assert spec.parent == shared.key
            assert f"model.pretrained={shared.run_dir / 'checkpoint_last.pt'}" in spec.overrides
            assert spec.cfg.model.pretrained == str(shared.run_dir / "checkpoint_last.pt")
        own = plan.runs[plan.row_runs("own_stage1")[seed].parent]
        assert own.key != shared.key and own.run_dir.parent.name.startswith("stage1-")
        assert own.cfg.optim.lr == 0.02 and shared.cfg.optim.lr == 0.01 and own.cfg.experiment.seed == seed
    keys = list(plan.runs)
    assert all(keys.index(s.parent) < keys.index(s.key) for s in plan.runs.values() if s.parent)


def test_rows_select_a_subset_and_refuse_unknown_names(tmp_path):
    grid_path = REPO / "configs" / "ablations" / "cim_components.yaml"
    grid, _, plan, _ = prepare(AblationOptions(grid_path, tmp_path / "out", scale="demo",
                                               rows=("no_strong_view", "authors")))
    assert [row.name for row in grid.rows] == ["authors", "no_strong_view"]  # the grid's order
    assert sorted({spec.row for spec in plan.runs.values() if spec.row}) == ["authors", "no_strong_view"]
    with pytest.raises(GridError, match="--rows nobody: not a row"):
        prepare(AblationOptions(grid_path, tmp_path / "out", scale="demo", rows=("authors", "nobody")))


def test_the_data_seed_generates_the_scenes_the_runs_train_on(tmp_path, monkeypatch):
    import tufl.demo.scenes as scenes
    import tufl.train.builders as builders

    seen: list[int] = []
    monkeypatch.setattr(scenes, "ensure_demo_data", lambda root, seed, **_: seen.append(seed))
    monkeypatch.setattr(builders, "open_training_datasets", lambda cfg: {})
    grid_path = REPO / "configs" / "ablations" / "cim_components.yaml"
    _, setup, plan, _ = prepare(AblationOptions(grid_path, tmp_path / "out", scale="demo", data_seed=7))
    setup.prepare(next(iter(plan.runs.values())).cfg)
    assert seen == [7] and "data seed 7" in setup.description
    with pytest.raises(GridError, match="--data-seed: only with --scale demo"):
        prepare(AblationOptions(grid_path, tmp_path / "out", data_seed=7))


def test_a_data_folder_of_another_data_seed_is_refused_not_regenerated(tmp_path):
    from tufl.demo.scenes import ensure_demo_data, load_demo_data_info

    data = tmp_path / "data"
    ensure_demo_data(data, seed=0, size=(64, 32), n_source=2, n_target_train=2, n_target_val=1, workers=1)
    grid_path = REPO / "configs" / "ablations" / "cim_components.yaml"
    _, setup, plan, _ = prepare(AblationOptions(grid_path, tmp_path / "out", scale="demo", data_dir=data,
                                                data_seed=7))
    with pytest.raises(GridError, match="holds the scenes of data seed 0"):
        setup.prepare(next(iter(plan.runs.values())).cfg)
    assert load_demo_data_info(data).seed == 0  # untouched


def test_the_demo_scale_switches_rows_against_the_authors_stage_two_protocol(tmp_path):
    """`tufl demo` trains stage two with an EMA teacher; a grid at demo scale keeps the authors'
    frozen labeller as its base, so the `authors` row is their protocol at either scale."""
    from tufl.config import load_experiment
    from tufl.demo.pipeline import config_path
    from tufl.train.run_state import config_differences

    grid_path = REPO / "configs" / "ablations" / "cim_components.yaml"
    _, _, plan, _ = prepare(AblationOptions(grid_path, tmp_path / "out", scale="demo", seeds=(0,),
                                            rows=("authors", "ema_teacher")))
    authors, ema = (plan.row_runs(row)[0].cfg for row in ("authors", "ema_teacher"))
    assert (authors.pseudo_labels.source, ema.pseudo_labels.source) == ("online", "ema")
    assert ema.pseudo_labels.ema_momentum == 0.99
    sets = ["model.pretrained=stage1.pt"]
    demo = load_experiment(config_path("stage2"), sets)
    theirs = load_experiment(config_path("stage2", authors_protocol=True), sets)
    # The demo's own stage two differs from the authors' protocol by its pseudo-labeller only,
    # and is exactly the grid's ema_teacher row.
    assert sorted(d.split(":")[0] for d in config_differences(theirs, demo)) == [
        "pseudo_labels.ema_momentum", "pseudo_labels.source"]
    method = ("pseudo_labels.", "mix.", "loss.", "optim.", "model.arch", "train.iters")
    assert [d for d in config_differences(demo, ema) if d.startswith(method)] == []


def test_a_run_whose_config_file_changed_after_planning_is_refused_not_trained(stage1_config, tmp_path):
    """A grid plans every run from its files; one edited while the grid runs would train
    something else under the row's name, so that run fails naming the key instead."""
    from tufl.ablation.execute import FAILED, TRAINED, Outcome, Runner, config_drift

    grid = _grid(tmp_path / "grid.yaml", [{"name": "a"}, {"name": "b", "set": ["loss.lambda_u=0.5"]}],
                 stage="stage1")
    _, _, plan, _ = prepare(AblationOptions(grid, tmp_path / "out", seeds=(0,), config=str(stage1_config)))
    started: list[str] = []
    runner = Runner(plan, tmp_path / "out", say=lambda line: None)
    runner._start = lambda spec, index, total: started.append(spec.row)  # no training here
    tree = yaml.safe_load(stage1_config.read_text())
    tree["optim"]["lr"] = 0.5
    stage1_config.write_text(yaml.safe_dump(tree))
    outcomes = runner.run()
    assert started == []
    for spec in plan.runs.values():
        assert outcomes[spec.key].status == FAILED
        assert "optim.lr: planned 0.01, now 0.5" in outcomes[spec.key].reason
    tree["optim"]["lr"] = 0.01  # restored: the runs start
    stage1_config.write_text(yaml.safe_dump(tree))
    runner = Runner(plan, tmp_path / "out", say=lambda line: None)

    def start(spec, index, total):
        started.append(spec.row)
        runner.outcomes[spec.key] = Outcome(TRAINED)

    runner._start = start
    runner.run()
    assert started == ["a", "b"]
    # after a run: the config it recorded is compared too (the files may change in between)
    spec = plan.row_runs("b")[0]
    recorded = to_plain(spec.cfg)
    assert config_drift(spec, recorded) == []
    recorded["loss"]["lambda_u"] = 0.08
    assert config_drift(spec, recorded) == ["loss.lambda_u: planned 0.5, now 0.08"]
    recorded["experiment"]["output_dir"] = "elsewhere"  # where it ran is not the config
    assert config_drift(spec, recorded) == ["loss.lambda_u: planned 0.5, now 0.08"]


def test_a_run_that_exits_0_without_a_readable_recorded_config_is_failed_not_counted(stage1_config, tmp_path):
    """The config a run recorded is what proves it trained the row; a run that exits 0
    without one (or with an unreadable one) fails by name instead of entering the table."""
    import subprocess
    import sys
    import time

    from tufl.ablation.execute import FAILED, TRAINED, Runner, _Running
    from tufl.runtime.typed_config import dump_config

    grid = _grid(tmp_path / "grid.yaml", [{"name": "a"}, {"name": "b"}, {"name": "c"}], stage="stage1")
    _, _, plan, _ = prepare(AblationOptions(grid, tmp_path / "out", seeds=(0,), config=str(stage1_config)))
    specs = {spec.row: spec for spec in plan.runs.values()}
    specs["b"].run_dir.mkdir(parents=True)
    (specs["b"].run_dir / "config.yaml").write_text("model: [unclosed\n")
    specs["c"].run_dir.mkdir(parents=True)
    dump_config(specs["c"].cfg, specs["c"].run_dir / "config.yaml")
    runner = Runner(plan, tmp_path / "out", say=lambda line: None)

    def start(spec, index, total):  # a "run" that exits 0 at once, recording nothing more
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        runner._running.append(_Running(spec, process, time.time(), tmp_path / f"{spec.row}.log"))

    runner._start = start
    outcomes = runner.run()
    for row in ("a", "b"):
        outcome = outcomes[specs[row].key]
        assert outcome.status == FAILED and outcome.exit_code == 0
        assert str(specs[row].run_dir / "config.yaml") in outcome.reason
        assert "missing or unreadable" in outcome.reason
    assert outcomes[specs["c"].key].status == TRAINED
