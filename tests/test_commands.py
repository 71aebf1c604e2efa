"""The command-line interface: each command as a user runs it."""

from __future__ import annotations

import dataclasses

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import runs
from tufl.cli import COMMANDS, main

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def _tufl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "tufl", *args], capture_output=True, text=True)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_is_an_error():
    done = _tufl("frobnicate", check=False)
    assert done.returncode == 2 and "unknown command 'frobnicate'" in done.stderr


def test_config_errors_name_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"_base_": str(CONFIGS / "gta5_cityscapes/bisenet_stage1.yaml"),
                                   "optim": {"lrr": 1}}))
    done = _tufl("show-config", "--config", str(bad), check=False)
    assert done.returncode == 2 and f"{bad}: optim.lrr: unknown key" in done.stderr
    done = _tufl("train", "--config", str(CONFIGS / "gta5_cityscapes/bisenet_stage1.yaml"), "--set", "optim.lr=fast",
                 check=False)
    assert done.returncode == 2 and "--set: optim.lr: expected a number, got 'fast'" in done.stderr
    done = _tufl("train", "--config", str(tmp_path / "missing.yaml"), check=False)
    assert done.returncode == 2 and "missing.yaml: config file not found" in done.stderr


def test_train_with_missing_dataset_names_expected_folders(tmp_path):
    done = _tufl("train", "--config", str(CONFIGS / "gta5_cityscapes/bisenet_source_only.yaml"),
                 "--set", f"data.source.root={tmp_path / 'nowhere'}", "--set", "model.pretrained=null",
                 "--set", f"experiment.output_dir={tmp_path / 'run'}", check=False)
    assert done.returncode == 2
    assert "nowhere" in done.stderr and "images/" in done.stderr and "labels/" in done.stderr


# experiment configs (ablation grids are files of another format: tests/ablation validates them)
EXPERIMENTS = sorted(p for p in CONFIGS.glob("*/*.yaml") if p.parent.name not in ("_base_", "ablations"))


@pytest.mark.parametrize("path", EXPERIMENTS,
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_configs_validate_and_build_their_network(path):
    from tufl.config import load_experiment
    from tufl.models.build import build_model

    cfg = load_experiment(path)  # own data: model.num_classes derived from the class file
    expected_classes = {"gta5_cityscapes": 19, "synthia_cityscapes": 16, "cityscapes_crosscity": 13,
                        "cityscapes_acdc": 19, "cityscapes_darkzurich": 19, "gta5_bdd100k": 19, "gta5_mapillary": 19,
                        "own_data": 6 if path.stem.startswith("bisenet") else 7}
    assert cfg.model.num_classes == expected_classes[path.parent.name]
    assert cfg.experiment.mode in path.stem
    model_cfg = dataclasses.replace(cfg.model, pretrained=None)  # weights are not available here; the architecture is
    model = build_model(model_cfg).model
    assert model.num_classes == cfg.model.num_classes
    assert model.num_outputs == (3 if cfg.model.arch == "bisenet" else 1)


def test_show_config_prints_resolved_values():
    done = _tufl("show-config", "--config", str(CONFIGS / "synthia_cityscapes/deeplabv2_stage2.yaml"),
                 "--set", "mix.p_longtail=0.1")
    cfg = yaml.safe_load(done.stdout)
    assert cfg["model"]["num_classes"] == 16 and cfg["experiment"]["mode"] == "stage2"
    assert cfg["mix"]["p_longtail"] == 0.1 and cfg["loss"]["tufl"]["gamma"] == 2.0
    assert cfg["optim"]["head_lr_mult"] == 10.0 and cfg["data"]["source"]["name"] == "synthia"


def test_config_reference_is_up_to_date():
    from tufl.config.reference import render_reference

    assert (REPO / "docs/config.md").read_text() == render_reference(), (
        "docs/config.md is stale: run `python -m tufl.config.reference > docs/config.md`")


def test_check_data_cli_passes_generated_scenes_and_fails_a_broken_root(scene_info, tmp_path):
    done = _tufl("check-data", "--dataset", "gta5", "--root", str(scene_info.source_root), "--num-classes", "19")
    assert "OK" in done.stdout or "no problems" in done.stdout.lower()
    done = _tufl("check-data", "--dataset", "cityscapes", "--root", str(tmp_path), "--split", "val", check=False)
    assert done.returncode != 0 and "leftImg8bit/" in (done.stdout + done.stderr)


def test_evaluate_predict_export_from_a_checkpoint(source_only_run, tmp_path):
    ckpt = source_only_run / "checkpoint_last.pt"
    done = _tufl("evaluate", "--checkpoint", str(ckpt), "--out", str(tmp_path))
    assert "mIoU" in done.stdout and "last checkpoint" in done.stdout
    report = json.loads((tmp_path / "eval_last.json").read_text())
    assert report["checkpoint_kind"] == "last" and report["checkpoint"] == str(ckpt)
    # the number equals the one the trainer's validation logged at the same iteration
    val = [json.loads(line) for line in (source_only_run / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in val if r["kind"] == "val" and r["iter"] == 20][0]["miou"]
    assert report["miou"] == pytest.approx(logged, abs=1e-9)

    # a config that contradicts the checkpoint is a config error naming the key and both sources
    done = _tufl("evaluate", "--checkpoint", str(ckpt), "--set", "model.num_classes=16", check=False)
    assert done.returncode == 2
    assert "model.num_classes: 16" in done.stderr and f"{ckpt} was trained with 19 classes" in done.stderr

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 72, 3), dtype=np.uint8)).save(images / f"{i}.png")
    _tufl("predict", "--checkpoint", str(ckpt), str(images), "--out", str(tmp_path / "pred"), "--label-ids")
    for kind in ("color", "overlay", "trainid", "labelIds"):
        assert sorted(p.name for p in (tmp_path / "pred" / kind).glob("*.png")) == ["0.png", "1.png", "2.png"]
    trainid = np.asarray(Image.open(tmp_path / "pred" / "trainid" / "0.png"))
    assert trainid.shape == (40, 72) and trainid.max() < 19

    done = _tufl("export", "--checkpoint", str(ckpt), "--onnx", str(tmp_path / "m.onnx"),
                 "--height", "64", "--width", "128", "--exporter", "torchscript")
    assert (tmp_path / "m.onnx").is_file() and "max |logit difference|" in done.stdout
    diff = float(done.stdout.split("=")[-1])
    assert diff < 1e-3


def test_predict_over_a_folder_with_one_truncated_image(source_only_run, tmp_path):
    """Every readable image is predicted, the unreadable one is named in one line, the
    command ends with a count and status 1, and no traceback is printed."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(folder / f"f{k}.png")
    Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(folder / "cut.jpg")
    (folder / "cut.jpg").write_bytes((folder / "cut.jpg").read_bytes()[:300])
    done = _tufl("predict", "--checkpoint", str(source_only_run / "checkpoint_last.pt"), str(folder),
                 "--out", str(tmp_path / "pred"), check=False)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.startswith("skipped:")]
    assert len(lines) == 1 and "cut.jpg: cannot read the image" in lines[0]
    assert "error: 1 of 3 images could not be read" in done.stderr
    assert sorted(p.name for p in (tmp_path / "pred" / "color").iterdir()) == ["f0.png", "f1.png"]


def test_pseudo_label_files_equal_online_predictions_and_drive_offline_stage2(scene_info, source_only_run, tmp_path):
    from tufl.data.registry import build_dataset
    from tufl.models.build import model_from_checkpoint
    from tufl.train.engine import train
    from tufl.objective.pseudo_labels import predict_pseudo_labels, read_pseudo_label

    tree = runs.run_tree(scene_info, tmp_path / "s2", "stage2", iters=3,
                         model={"pretrained": str(source_only_run / "checkpoint_last.pt")},
                         pseudo_labels={"source": "offline", "dir": str(tmp_path / "pl")})
    path = runs.write_yaml(tree, tmp_path / "s2.yaml")
    _tufl("pseudo-label", "--config", str(path), "--checkpoint", str(source_only_run / "checkpoint_last.pt"))
    model, _ = model_from_checkpoint(str(source_only_run / "checkpoint_last.pt"))
    model.eval()
    dataset = build_dataset("cityscapes", str(scene_info.target_root), "train", 19)
    for i in range(len(dataset)):
        image = torch.from_numpy(np.array(dataset.load(i)[0])).permute(2, 0, 1)[None]
        labels, conf = predict_pseudo_labels(model, image)
        stored_labels, stored_conf = read_pseudo_label(tmp_path / "pl", dataset, i)
        assert np.array_equal(stored_labels, labels[0].numpy())
        assert np.abs(stored_conf - conf[0].numpy()).max() <= 0.5 / 65535 + 1e-7
    train(runs.config(tree))
    records = [json.loads(line) for line in (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    assert all(r["loss_mix"] > 0 for r in records if r["kind"] == "train")


def test_benchmark_commands_run_small(tmp_path):
    _tufl("benchmark", "loss", "--height", "32", "--width", "48", "--repeats", "1", "--backends", "torch", "fused",
          "--json", str(tmp_path / "l.json"))
    loss = json.loads((tmp_path / "l.json").read_text())
    assert loss["torch_agree"] and loss["fused_agree"] and loss["shape"] == [2, 19, 32, 48]
    for name in ("torch", "fused"):
        assert loss[f"{name}_speedup"] == pytest.approx(loss["reference_ms"] / loss[f"{name}_ms"])
    _tufl("benchmark", "train", "--archs", "bisenet", "--modes", "stage2", "--height", "64", "--width", "64",
          "--repeats", "1", "--warmup", "0", "--json", str(tmp_path / "t.json"))
    rows = json.loads((tmp_path / "t.json").read_text())
    assert rows[0]["arch"] == "bisenet" and rows[0]["mode"] == "stage2" and rows[0]["seconds_per_iter"] > 0
