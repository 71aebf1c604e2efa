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


COLOURS = [[128, 64, 128], [70, 70, 70], [250, 170, 30], [107, 142, 35], [70, 130, 180], [220, 20, 60], [0, 0, 142]]


def _swapped_class_file(path: Path) -> Path:
    """The example class file with sky and human trading train ids (4 <-> 5)."""
    tree = yaml.safe_load(Path(CLASSES).read_text())
    for entry in tree["classes"]:
        entry["train_id"] = {4: 5, 5: 4}.get(entry["train_id"], entry["train_id"])
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _run_command(module, argv) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def test_the_class_set_travels_with_the_model(scene_info, own_data, tmp_path, capsys):
    from tufl.cli import evaluate as evaluate_command
    from tufl.runtime.errors import ConfigError
    from tufl.train.engine import Trainer

    tree = _tree(scene_info, own_data, tmp_path / "s1", "stage1")
    del tree["model"]["num_classes"]  # derived from the class file
    config = runs.write_yaml(tree, tmp_path / "s1.yaml")
    from tufl.config import load_experiment

    cfg = load_experiment(config)
    assert cfg.model.num_classes == 7
    train(cfg)
    last, best = tmp_path / "s1" / "checkpoint_last.pt", tmp_path / "s1" / "checkpoint_best.pt"
    state, best_state = ckpt.load_checkpoint(last), ckpt.load_checkpoint(best)
    for stored in (state, best_state):  # the class file's names, order and colours, in both
        assert stored["classes"]["names"] == NAMES and stored["classes"]["colours"] == COLOURS
    # the best checkpoint keeps what inference needs, the last one everything a resume needs
    assert "optimizer" in state and "rng" in state and not {"optimizer", "rng", "losses"} & best_state.keys()
    assert best.stat().st_size < 0.75 * last.stat().st_size
    assert _run_command(evaluate_command, ["--checkpoint", str(best), "--out", str(tmp_path / "ev")]) == 0
    assert list(json.loads((tmp_path / "ev" / "eval_best.json").read_text())["iou"]) == NAMES

    # A class file with two classes swapped: refused by evaluate (nothing written), resume and the next stage
    swapped = _swapped_class_file(tmp_path / "swapped.yaml")
    for section in ("source", "val"):
        tree["data"][section]["classes"] = str(swapped)
    other = runs.write_yaml(tree, tmp_path / "swapped_run.yaml")
    capsys.readouterr()
    assert _run_command(evaluate_command, ["--checkpoint", str(last), "--config", str(other),
                                           "--out", str(tmp_path / "ev2")]) == 2
    error = capsys.readouterr().err
    assert "predicts other classes than the config" in error
    assert "train id 4: 'human' in the config, 'sky' in" in error and "train id 5: 'sky'" in error
    assert not (tmp_path / "ev2").exists()
    for resume in ("auto", "force"):  # a different class set is never resumed, not even by force
        with pytest.raises(ConfigError, match="the checkpoint to resume\\) predicts other classes"):
            Trainer(load_experiment(other), resume=resume)
    tree2 = _tree(scene_info, own_data, tmp_path / "s2", "stage2", model={"pretrained": str(last)})
    del tree2["model"]["num_classes"]
    tree2["data"]["source"]["classes"] = tree2["data"]["val"]["classes"] = str(swapped)
    with pytest.raises(ConfigError, match="model.pretrained\\) predicts other classes"):
        Trainer(load_experiment(runs.write_yaml(tree2, tmp_path / "s2.yaml")))


def test_an_exported_model_carries_its_classes(scene_info, own_data, tmp_path):
    onnx = pytest.importorskip("onnx")
    from tufl.cli import export as export_command

    tree = _tree(scene_info, own_data, tmp_path / "s1", "source_only", train={"iters": 1, "checkpoint_every": 1},
                 loss={"unsupervised": "none"})
    train(runs.config(tree))
    out = tmp_path / "model.onnx"
    assert _run_command(export_command, ["--checkpoint", str(tmp_path / "s1" / "checkpoint_last.pt"), "--onnx",
                                         str(out), "--height", "32", "--width", "64", "--exporter", "torchscript",
                                         "--no-verify"]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["tufl.classes"])["names"] == NAMES and meta["tufl.input_convention"] == "imagenet_rgb"


def test_num_classes_comes_from_the_class_file(scene_info, own_data, tmp_path):
    from tufl.config import load_experiment
    from tufl.runtime.errors import ConfigError

    tree = _tree(scene_info, own_data, tmp_path / "run", "stage1")
    del tree["model"]["num_classes"]
    path = runs.write_yaml(tree, tmp_path / "run.yaml")
    assert load_experiment(path).model.num_classes == 7  # counted from the class file
    with pytest.raises(ConfigError) as error:
        load_experiment(path, ["model.num_classes=19"])
    assert str(error.value).splitlines()[1].strip() == (
        f"--set: model.num_classes: 19, but the class file {CLASSES} (data.source.classes) defines 7 classes "
        f"{NAMES}; leave model.num_classes out (it is derived from the class file) or make the two agree")
    other = _swapped_class_file(tmp_path / "swapped.yaml")
    tree["data"]["val"]["classes"] = str(other)  # source and val name different class sets
    with pytest.raises(ConfigError, match="data.source.classes, data.val.classes: .*defines other classes than"):
        load_experiment(runs.write_yaml(tree, tmp_path / "two.yaml"))
