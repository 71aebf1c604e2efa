"""Own data end to end: GTA5 (19 classes merged into 7) -> a folder of unlabelled JPEGs of mixed
sizes; stage one, stage two from it, and `tufl evaluate` on a labelled folder dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import runs
from tufl.data.registry import open_dataset
from tufl.runtime import checkpoint_files as ckpt
from tufl.train.engine import train
from tufl.runtime.run_log import read_metrics

REPO = Path(__file__).resolve().parents[2]
CLASSES = str(REPO / "configs/own_data/classes/classes_example.yaml")
ITERS = 2
NAMES = ["flat", "construction", "object", "nature", "sky", "human", "vehicle"]
# Cityscapes label id -> merged class (written out by hand from the example file's from_source).
MERGED = {7: 0, 8: 0, 11: 1, 12: 1, 13: 1, 17: 2, 19: 2, 20: 2, 21: 3, 22: 3, 23: 4, 24: 5, 25: 5,
          26: 6, 27: 6, 28: 6, 31: 6, 32: 6, 33: 6}


def _merge(label_ids: np.ndarray) -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)
    for cid, merged in MERGED.items():
        lut[cid] = merged
    return lut[label_ids]


@pytest.fixture(scope="module")
def own_data(scene_info, tmp_path_factory):
    """dashcam/frames: the target scenes as JPEGs of three different sizes; dashcam/val: the
    val scenes with merged labels (raw values 0..6, 255) in the folder layout."""
    root = tmp_path_factory.mktemp("dashcam")
    cs = scene_info.target_root
    for i, path in enumerate(sorted((cs / "leftImg8bit" / "train").rglob("*.png"))):
        image = Image.open(path).convert("RGB")
        size = [(64, 32), (128, 64), (80, 48)][i % 3]
        (root / "frames" / f"sub{i % 2}").mkdir(parents=True, exist_ok=True)
        image.resize(size).save(root / "frames" / f"sub{i % 2}" / f"f{i}.jpg", quality=95)
    for path in sorted((cs / "leftImg8bit" / "val").rglob("*.png")):
        stem = path.name.replace("_leftImg8bit.png", "")
        label_path = path.parent.as_posix().replace("leftImg8bit", "gtFine") + f"/{stem}_gtFine_labelIds.png"
        (root / "val" / "images").mkdir(parents=True, exist_ok=True)
        (root / "val" / "labels").mkdir(parents=True, exist_ok=True)
        Image.open(path).save(root / "val" / "images" / f"{stem}.png")
        merged = _merge(np.asarray(Image.open(label_path)))
        Image.fromarray(merged, mode="L").save(root / "val" / "labels" / f"{stem}.png")
    return root


def _tree(scene_info, own_data, out, mode, **sections):
    val = {"name": "folder", "root": str(own_data), "images": ["val/images"], "labels": "val/labels",
           "classes": CLASSES}
    tree = runs.run_tree(scene_info, out, mode, iters=ITERS, model={"num_classes": 7},
                         data={"source": {"classes": CLASSES},
                               "target": {"name": "images", "root": str(own_data), "images": ["frames/**/*.jpg"],
                                          "resize": [64, 32]},
                               "val": val},
                         train={"checkpoint_every": ITERS})
    for key, update in sections.items():
        runs._deep_update(tree.setdefault(key, {}), update)
    return tree


def test_source_labels_are_merged_when_loaded(scene_info, own_data, tmp_path):
    cfg = runs.config(_tree(scene_info, own_data, tmp_path, "stage1"))
    source = open_dataset(cfg.data.source, 7, False)
    raw = np.asarray(Image.open(source.label_path(0)))  # palette indices = Cityscapes label ids
    np.testing.assert_array_equal(source.load(0)[1], _merge(raw))
    target = open_dataset(cfg.data.target, 7, False)
    assert len(target) == 8 and not target.has_labels
    assert {target.load(i)[0].shape for i in range(len(target))} == {(32, 64, 3)}


def test_stage1_then_stage2_then_evaluate_on_a_folder(scene_info, own_data, tmp_path, capsys):
    tree1 = _tree(scene_info, own_data, tmp_path / "s1", "stage1")
    train(runs.config(tree1))
    state = ckpt.load_checkpoint(tmp_path / "s1" / "checkpoint_last.pt")
    assert state["iteration"] == ITERS and state["model_config"]["num_classes"] == 7
    records = read_metrics(tmp_path / "s1", "train")
    assert len(records) == ITERS and all(np.isfinite(r["loss"]) for r in records)
    assert len(records[-1]["thresholds"]) == 7
    val = read_metrics(tmp_path / "s1", "val")[-1]
    assert list(val["iou"]) == NAMES

    # Stage two from stage one; the target without resize (mixed native sizes, same-size crops).
    tree2 = _tree(scene_info, own_data, tmp_path / "s2", "stage2",
                  model={"num_classes": 7, "pretrained": str(tmp_path / "s1" / "checkpoint_last.pt")},
                  mix={"p_longtail": 1.0})
    tree2["data"]["target"]["resize"] = None
    with pytest.warns(UserWarning, match="no class relations for a 7-class set"):
        train(runs.config(tree2))
    records = read_metrics(tmp_path / "s2", "train")
    assert len(records) == ITERS and all(np.isfinite(r["loss"]) for r in records)

    from tufl.cli import evaluate as command

    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(tree2))
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--checkpoint", str(tmp_path / "s2" / "checkpoint_last.pt"), "--config", str(config),
                              "--out", str(tmp_path / "report")])
    assert command.run(args) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in NAMES)
    report = json.loads((tmp_path / "report" / "eval_last.json").read_text())
    assert list(report["iou"]) == NAMES and report["num_classes"] == 7
    present = [v for v in report["iou"].values() if v is not None]
    assert report["miou"] == pytest.approx(sum(present) / len(present))
    assert all((v is None) == (n in report["absent_classes"]) for n, v in report["iou"].items())
