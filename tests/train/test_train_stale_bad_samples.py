"""bad_samples.json belongs to the run beside it: a fresh run in the folder of an earlier failed
run removes the earlier list, a resumed run keeps and extends it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import runs
from tufl.cli import main
from tufl.train.engine import Trainer


def _copy_scenes(scene_info, tmp_path):
    root = tmp_path / "scenes"
    shutil.copytree(scene_info.root, root)
    return replace(scene_info, root=root)  # source_root and target_root follow root


def _train(tree, tmp_path, *extra: str) -> int:
    return main(["train", "--config", str(runs.write_yaml(tree, tmp_path / "run.yaml")), *extra])


def test_a_fresh_run_removes_the_list_of_an_earlier_failed_run(scene_info, tmp_path, capsys):
    info = _copy_scenes(scene_info, tmp_path)
    images = sorted((info.source_root / "images").iterdir())
    kept = {path: path.read_bytes() for path in images[:2]}
    for path in kept:  # 2 of 8 = 25 % > 20 %: the run stops before its first checkpoint
        path.write_bytes(b"corrupt")
    run = tmp_path / "run"
    tree = runs.run_tree(info, run, "source_only", 4, data={"max_bad_fraction": 0.2}, train={"checkpoint_every": 4})
    assert _train(tree, tmp_path) == 1
    listed = json.loads((run / "bad_samples.json").read_text())
    assert listed["counts"]["source"] == 2 and not list(run.glob("checkpoint_last*.pt"))
    for path, data in kept.items():  # the user fixes the files and starts again
        path.write_bytes(data)
    capsys.readouterr()
    assert _train(tree, tmp_path, "--resume", "auto") == 0  # no checkpoint: a fresh run
    assert "no checkpoint" in capsys.readouterr().out
    assert not (run / "bad_samples.json").exists()
    assert json.loads((run / "run_info.json").read_text())["bad_samples_skipped"] == {"source": 0, "target": 0}


def test_a_resumed_run_keeps_and_extends_its_list(scene_info, tmp_path, monkeypatch):
    info = _copy_scenes(scene_info, tmp_path)
    bad = sorted((info.source_root / "images").iterdir())[3]
    bad.write_bytes(b"corrupt")
    run = tmp_path / "run"
    tree = runs.run_tree(info, run, "source_only", 8, data={"max_bad_fraction": 0.5})
    runs.run_killed(monkeypatch, 5, lambda: _train(tree, tmp_path))  # checkpoint at 4, killed at 5
    before = json.loads((run / "bad_samples.json").read_text())
    assert list(before["files"]["source"]) == [str(bad)]
    trainer = Trainer(runs.config(tree), resume="auto")
    assert trainer.iteration == 4 and (run / "bad_samples.json").exists()
    trainer.run()
    after = json.loads((run / "bad_samples.json").read_text())
    assert after["files"]["source"] == before["files"]["source"] and after["counts"]["source"] == 1
