"""`tufl demo --quick` end to end: data, three trainings, evaluation, table, report."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from PIL import Image


def test_quick_demo_runs_end_to_end_and_writes_every_report_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tufl", "demo", "--quick", "--out", str(tmp_path / "demo")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for name in ("source-only", "stage one (TUFL)", "stage two (TUFL + CIM)"):
        assert name in out
    assert "target mIoU" in out and "gain" in out
    report = tmp_path / "demo" / "report"
    for name in ("index.html", "summary.json", "miou_per_class.png", "qualitative.png", "loss_curves.png",
                 "thresholds.png"):
        assert (report / name).is_file(), name
    for png in report.glob("*.png"):
        with Image.open(png) as img:
            assert img.size[0] > 100 and img.size[1] > 100
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    mious = summary["miou"]
    assert list(mious) == ["source-only", "stage one (TUFL)", "stage two (TUFL + CIM)"]
    assert all(0.0 <= v <= 1.0 for v in mious.values())
    html = (report / "index.html").read_text()
    for value in mious.values():
        assert f"{100 * value:.2f}" in html  # the page shows the measured numbers
    # the report of the three run folders (tufl.report) with the demo's extras: its scores on the
    # target validation split, gains, training times, settings and samples of that split
    from tufl.report.page import format_duration

    shown = json.loads((report / "summary.json").read_text())
    assert [m["name"] for m in shown["models"]] == list(mious)
    assert [m["miou"] for m in shown["models"]] == list(mious.values())
    assert shown["scores_on"] == "the target validation split"
    assert shown["settings"] == summary["settings"]
    for model, previous in zip(shown["models"][1:], list(mious.values())):
        assert model["gain_over_previous"] == model["miou"] - previous
        assert f"{100 * model['gain_over_previous']:+.2f}" in html
    for model in shown["models"]:
        assert model["train_seconds"] > 0 and format_duration(model["train_seconds"]) in html
    assert "<h2>Settings</h2>" in html and "gain over previous row" in html
    assert "6 images of cityscapes val" in html and "ground truth" in html
    # the three runs are real training runs with their own checkpoints and logs
    for stage in ("source_only", "stage1", "stage2"):
        assert (tmp_path / "demo" / "runs" / stage / "checkpoint_last.pt").is_file()
    assert list((tmp_path / "demo" / "runs" / "stage2" / "inspect").glob("mix_*.png"))
    # stage two learns from an EMA teacher (the demo's choice, docs/faithfulness.md), and says so
    stage2 = yaml.safe_load((tmp_path / "demo" / "runs" / "stage2" / "config.yaml").read_text())
    assert stage2["pseudo_labels"]["source"] == "ema" and stage2["pseudo_labels"]["ema_momentum"] == 0.99
    assert summary["settings"]["stage-two pseudo-labels"] == "an EMA teacher of the student (momentum 0.99)"
    # a second run reuses the generated data (manifest matches) and trains again
    again = subprocess.run([sys.executable, "-m", "tufl", "demo", "--quick", "--out", str(tmp_path / "demo")],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads((tmp_path / "demo" / "summary.json").read_text())["miou"] == mious


def test_set_with_a_stage_prefix_reaches_only_that_stage(capsys):
    from tufl.cli import main
    from tufl.demo.pipeline import stage_overrides

    extra = ["optim.lr=0.02", "stage2:pseudo_labels.source=ema", "stage1:mic.weight=1", "stage2:mic.weight=1"]
    assert stage_overrides(extra, "source_only") == ["optim.lr=0.02"]
    assert stage_overrides(extra, "stage1") == ["optim.lr=0.02", "mic.weight=1"]
    assert stage_overrides(extra, "stage2") == ["optim.lr=0.02", "pseudo_labels.source=ema", "mic.weight=1"]
    # a value holding a colon is not a stage prefix
    assert stage_overrides(["data.source.root=C:/data"], "stage1") == ["data.source.root=C:/data"]
    assert main(["demo", "--set", "stage3:optim.lr=1"]) == 2
    assert "unknown stage 'stage3'" in capsys.readouterr().err


def test_the_report_names_where_stage_two_pseudo_labels_come_from():
    from tufl.demo.pipeline import describe_pseudo_labels
    from tufl.objective.pseudo_labels import PseudoLabelConfig

    assert describe_pseudo_labels(PseudoLabelConfig()) == "the frozen stage-one model (the paper's pseudo-labeller)"
    assert describe_pseudo_labels(PseudoLabelConfig(source="ema", ema_momentum=0.9)) == \
        "an EMA teacher of the student (momentum 0.9)"
    assert describe_pseudo_labels(PseudoLabelConfig(source="offline", dir="pl")).endswith(" in pl")
