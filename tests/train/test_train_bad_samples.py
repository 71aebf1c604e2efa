"""Training over datasets with a few corrupt files: skipped, named once, counted, bounded."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import runs
from tufl.cli import main
from tufl.runtime import checkpoint_files as ckpt
from tufl.runtime.run_log import read_metrics


def _copy_scenes(scene_info, tmp_path):
    root = tmp_path / "scenes"
    shutil.copytree(scene_info.root, root)
    return replace(scene_info, root=root)  # source_root and target_root follow root


def test_corrupt_files_are_skipped_named_once_and_counted(scene_info, tmp_path, capsys):
    info = _copy_scenes(scene_info, tmp_path)
    bad_image = sorted((info.source_root / "images").iterdir())[3]
    bad_image.write_bytes(bad_image.read_bytes()[:200])  # truncated PNG
    bad_target = sorted((info.target_root / "leftImg8bit" / "train").rglob("*.png"))[5]
    bad_target.write_bytes(b"not an image")
    tree = runs.run_tree(info, tmp_path / "run", "stage1", 8, data={"max_bad_fraction": 0.2})
    status = main(["train", "--config", str(runs.write_yaml(tree, tmp_path / "run.yaml"))])
    out = capsys.readouterr().out
    assert status == 0
    # 8 iterations of 2 images = 2 epochs of 8: each bad file met twice (or more), named once
    assert out.count(f"skipped a bad source sample: {bad_image}") == 1
    assert out.count(f"skipped a bad target sample: {bad_target}") == 1
    assert "skipped bad samples: source 1, target 1" in out
    last = read_metrics(tmp_path / "run", "train")[-1]
    assert last["bad_samples"] == {"source": 1, "target": 1}
    listed = json.loads((tmp_path / "run" / "bad_samples.json").read_text())
    assert listed["counts"] == {"source": 1, "target": 1}
    assert list(listed["files"]["source"]) == [str(bad_image)]
    assert listed["files"]["source"][str(bad_image)].startswith("corrupt or truncated image")
    info_json = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info_json["bad_samples_skipped"] == {"source": 1, "target": 1} and info_json["last_iteration"] == 8
    assert ckpt.load_checkpoint(tmp_path / "run" / ckpt.LAST_NAME)["bad_samples"]["target"] == {
        str(bad_target): listed["files"]["target"][str(bad_target)]}


def test_more_bad_files_than_the_allowed_fraction_stop_the_run(scene_info, tmp_path, capsys):
    info = _copy_scenes(scene_info, tmp_path)
    images = sorted((info.source_root / "images").iterdir())
    for path in images[:2]:  # 2 of 8 = 25 % > 20 %
        path.write_bytes(b"corrupt")
    tree = runs.run_tree(info, tmp_path / "run", "source_only", 8, data={"max_bad_fraction": 0.2})
    status = main(["train", "--config", str(runs.write_yaml(tree, tmp_path / "run.yaml"))])
    err = capsys.readouterr().err
    assert status == 1
    assert "error: 2 of 8 source samples (25.00 %) are unreadable or inconsistent" in err
    assert "data.max_bad_fraction=0.2" in err and str(images[0]) in err and str(images[1]) in err


def test_without_skipping_a_bad_file_stops_with_its_name(scene_info, tmp_path, capsys):
    info = _copy_scenes(scene_info, tmp_path)
    bad = sorted((info.source_root / "images").iterdir())[0]
    bad.write_bytes(b"corrupt")
    tree = runs.run_tree(info, tmp_path / "run", "source_only", 8, data={"skip_bad_files": False})
    status = main(["train", "--config", str(runs.write_yaml(tree, tmp_path / "run.yaml"))])
    assert status == 2 and f"error: {bad}: not a readable image" in capsys.readouterr().err
