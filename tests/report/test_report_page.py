"""Tests of the report's figures and files (tufl.report.figures, page, writer): what the page
shows for given runs, what is written, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from tufl.data.labels import palette as class_palette
from tufl.report.figures import (colourize, iou_figure, loss_figure, miou_figure, moving_average, qualitative_figure,
                                 threshold_figure)
from tufl.report.page import format_duration, format_percent
from tufl.report.writer import ModelReport, QualitativeRow, write_report


# --------------------------------------------------------------------------- report helpers


def test_helpers_hand_values():
    np.testing.assert_allclose(moving_average([1, 2, 3, 4, 5], 3), [1.5, 2, 3, 4, 4.5])
    np.testing.assert_allclose(moving_average([1, 5], 1), [1, 5])
    assert format_percent(0.4567) == "45.67" and format_percent(math.nan) == "n/a"
    assert format_duration(42.34) == "42.3 s"
    assert format_duration(725) == "12 min 05 s"
    assert format_duration(3725) == "1 h 02 min"
    table = np.zeros((256, 3), np.uint8)
    table[1] = (10, 20, 30)
    table[255] = (200, 200, 200)
    out = colourize(np.array([[1, 255], [0, 1]], np.uint8), table)
    np.testing.assert_array_equal(out, [[[10, 20, 30], [0, 0, 0]], [[0, 0, 0], [10, 20, 30]]])


# --------------------------------------------------------------------------- write_report

CLASSES = ("road", "sidewalk", "car")


def _train_records(with_thresholds: bool) -> list[dict]:
    records = []
    for it in range(0, 200, 10):
        record = {"iter": it, "kind": "train", "loss": 2.0 - it / 200, "loss_sup": 1.5 - it / 300, "lr": 0.01}
        if with_thresholds:
            record["loss_unsup"] = 0.1
            record["thresholds"] = {"0": 0.5 + it / 1000, "2": 0.6}
        records.append(record)
    records.append({"iter": 200, "kind": "val", "miou": 0.4})
    return records


def _models(first_name: str = "source-only") -> list[ModelReport]:
    return [
        ModelReport(first_name, 0.4567, [0.1, 0.8, math.nan], _train_records(False), 61.5),
        ModelReport("stage one", 0.5123, [0.3, 0.7, math.nan], _train_records(True), 725.0),
        ModelReport("stage two", 0.5, [0.2, 0.9, math.nan], _train_records(True), None),
    ]


def _qualitative(names: list[str]) -> list[QualitativeRow]:
    rng = np.random.default_rng(2)
    rows = []
    for _ in range(2):
        gt = rng.integers(0, 3, (12, 20)).astype(np.uint8)
        gt[:, :3] = 255
        rows.append(QualitativeRow(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8), gt, {n: gt for n in names}))
    return rows


def test_write_report_writes_every_file_and_round_trips_numbers(tmp_path):
    models = _models()
    out = tmp_path / "report"
    settings = {"seed": 3, "machine": "2-core CPU", "image_size": (32, 16), "iterations": 200, "train_seconds": 90.0}
    page = write_report(out, models, _qualitative([m.name for m in models]), CLASSES, class_palette(19), settings)

    assert page == out / "index.html"
    expected = {"index.html", "summary.json", "miou_per_class.png", "qualitative.png", "loss_curves.png",
                "thresholds.png", "miou_curves.png"}
    assert {p.name for p in out.iterdir()} == expected  # no temporary files left behind
    for name in expected - {"index.html", "summary.json"}:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width >= 200

    text = page.read_text()
    for value in ("45.67", "51.23", "50.00"):  # mIoU in % with two decimals
        assert f'<td class="num">{value}</td>' in text or f"<strong>{value}</strong>" in text
    assert "<strong>51.23</strong>" in text  # best mIoU in bold
    assert "+5.56" in text and "-1.23" in text  # gains over the previous row, in points
    assert "<strong>30.0</strong>" in text and "<strong>90.0</strong>" in text  # best IoU per class
    assert "1 min 02 s" in text and "12 min 05 s" in text and "1 min 30 s" in text
    for png in out.glob("*.png"):
        assert f'src="{png.name}"' in text

    summary = json.loads((out / "summary.json").read_text())
    assert summary["class_names"] == list(CLASSES)
    assert summary["settings"]["image_size"] == [32, 16] and summary["settings"]["seed"] == 3
    assert [m["name"] for m in summary["models"]] == [m.name for m in models]
    assert [m["miou"] for m in summary["models"]] == [0.4567, 0.5123, 0.5]
    assert summary["models"][0]["iou"] == [0.1, 0.8, None]
    assert summary["models"][0]["gain_over_previous"] is None
    assert summary["models"][1]["gain_over_previous"] == pytest.approx(0.0556)
    assert [m["train_seconds"] for m in summary["models"]] == [61.5, 725.0, None]
    assert sorted(summary["images"]) == sorted(expected - {"index.html", "summary.json"})


def test_write_report_is_byte_for_byte_reproducible(tmp_path):
    models = _models()
    rows = _qualitative([m.name for m in models])
    for out in (tmp_path / "a", tmp_path / "b"):
        write_report(out, models, rows, CLASSES, class_palette(19), {"seed": 3})
    for first in (tmp_path / "a").iterdir():
        assert first.read_bytes() == (tmp_path / "b" / first.name).read_bytes(), first.name
        if first.suffix == ".png":
            with Image.open(first) as image:
                assert "Software" not in image.info  # no metadata that changes between versions or runs


def test_report_figures_show_every_run_and_class():
    models = _models()
    thresholds = threshold_figure(models, CLASSES, class_palette(19))
    assert [ax.get_title() for ax in thresholds.axes] == [
        "stage one: per-class TUFL thresholds", "stage two: per-class TUFL thresholds"]
    assert [t.get_text() for t in thresholds.axes[0].get_legend().get_texts()] == ["road", "car"]
    losses = loss_figure(models)
    assert [ax.get_title().split(":")[0] for ax in losses.axes] == [m.name for m in models]
    assert [t.get_text() for t in losses.axes[1].get_legend().get_texts()] == ["loss", "loss_sup", "loss_unsup"]
    assert all(ax.get_xlabel() == "iteration" for ax in losses.axes + thresholds.axes)
    assert threshold_figure(models[:1], CLASSES, class_palette(19)) is None  # source-only logs no thresholds


def test_write_report_skips_charts_without_data_and_removes_stale_ones(tmp_path):
    models = [ModelReport(m.name, m.miou, m.iou, [], None) for m in _models()]
    (tmp_path / "thresholds.png").write_bytes(b"old")
    page = write_report(tmp_path, models, [], CLASSES, class_palette(19), {})
    assert {p.name for p in tmp_path.iterdir()} == {"index.html", "summary.json", "miou_per_class.png"}
    text = page.read_text()
    assert 'src="miou_per_class.png"' in text
    assert "qualitative.png" not in text and "thresholds.png" not in text and "loss_curves.png" not in text


def test_write_report_escapes_text(tmp_path):
    models = _models(first_name="a<b>&c")
    page = write_report(tmp_path, models, [], CLASSES, class_palette(19), {"note": "<script>x</script>"},
                        title='T "quoted" <i>')
    text = page.read_text()
    assert "a&lt;b&gt;&amp;c" in text and "a<b>" not in text
    assert "&lt;script&gt;" in text and "<script>" not in text
    assert "<title>T &quot;quoted&quot; &lt;i&gt;</title>" in text


def test_write_report_rejects_bad_input(tmp_path):
    palette = class_palette(19)
    with pytest.raises(ValueError, match="model 'x' has 2 IoU values for 3 classes"):
        write_report(tmp_path, [ModelReport("x", 0.5, [0.1, 0.2])], [], CLASSES, palette, {})
    models = _models()
    with pytest.raises(ValueError, match=r"qualitative row 0: predictions for unknown models \['ghost'\]"):
        write_report(tmp_path, models, _qualitative(["ghost"]), CLASSES, palette, {})
    bad = [ModelReport("x", 0.5, [0.1, 0.2, 0.3], [{"iter": 0, "kind": "train", "thresholds": {"7": 0.5}}])]
    with pytest.raises(ValueError, match="threshold key '7' is not a class index"):
        write_report(tmp_path, bad, [], CLASSES, palette, {})
    with pytest.raises(ValueError, match="palette"):
        write_report(tmp_path, models, [], CLASSES, palette[:19], {})
    assert not any(tmp_path.iterdir())  # nothing written on bad input


def _cells(text: str, table_id: str) -> dict[str, list[str]]:
    """First cell -> the other cells' text of each body row of table ``table_id``."""
    from html.parser import HTMLParser

    class Rows(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.inside, self.in_body, self.rows, self.cell = False, False, [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.inside = dict(attrs).get("id") == table_id
            elif self.inside and tag == "tbody":
                self.in_body = True
            elif self.in_body and tag == "tr":
                self.rows.append([])
            elif self.in_body and tag == "td":
                self.cell = ""

        def handle_endtag(self, tag):
            if tag == "td" and self.cell is not None:
                self.rows[-1].append(self.cell.strip())
                self.cell = None
            elif tag == "table":
                self.inside = self.in_body = False

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Rows()
    parser.feed(text)
    return {row[0]: row[1:] for row in parser.rows}


def test_absent_classes_and_runs_without_scores_are_shown_as_such(tmp_path):
    models = _models()
    unscored = ModelReport("no val", None, None, _train_records(False)[:-1], None)
    page = write_report(tmp_path, [*models, unscored], [], CLASSES, class_palette(19), {})
    text = page.read_text()
    per_class = _cells(text, "per-class-iou")
    assert per_class["car"] == ["absent", "absent", "absent", "-"]  # NaN: absent, never 0
    assert per_class["road"] == ["10.0", "30.0", "20.0", "+10.0"]
    assert len(per_class["road"]) == 4  # the run without scores has no column...
    runs = _cells(text, "runs")
    assert runs["no val"][1] == "no validation record"  # ...but a row of the runs table
    assert runs["no val"][0] == "190"  # its last logged iteration
    assert "Not in the table: no val (no validation record" in text
    labels = [t.get_text() for t in iou_figure(models, CLASSES).axes[0].texts]
    assert labels.count("absent") == 3 and "0.0" not in labels
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["models"][-1]["miou"] is None and summary["models"][-1]["iou"] is None


def test_a_report_without_any_scores_has_no_per_class_chart(tmp_path):
    records = _train_records(True)[:-1]
    page = write_report(tmp_path, [ModelReport("a", None, None, records)], [], CLASSES, class_palette(19), {})
    text = page.read_text()
    assert "none has a validation record" in text and "No run has scores" in text
    assert not (tmp_path / "miou_per_class.png").exists() and not (tmp_path / "miou_curves.png").exists()
    assert (tmp_path / "loss_curves.png").is_file() and (tmp_path / "thresholds.png").is_file()


def test_miou_curve_has_a_line_per_validated_run():
    models = _models()
    for model in models:
        model.metrics.append({"iter": 100, "kind": "val", "miou": 0.3})
    fig = miou_figure(models)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [m.name for m in models]
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [100, 200] and list(line.get_ydata()) == pytest.approx([30.0, 40.0])
    assert miou_figure([ModelReport("a", None, None, _train_records(False)[:-1])]) is None


def test_samples_without_ground_truth_have_no_ground_truth_column(tmp_path):
    models = _models()
    rows = [QualitativeRow(r.image, None, r.predictions) for r in _qualitative([m.name for m in models])]
    fig = qualitative_figure(rows, models, CLASSES, class_palette(19))
    titles = [" ".join(t.get_text().split()) for t in fig.texts]  # titles wrap to the cell width
    assert titles == ["image", *(m.name for m in models)]
    with_gt = qualitative_figure(_qualitative([m.name for m in models]), models, CLASSES, class_palette(19))
    assert [" ".join(t.get_text().split()) for t in with_gt.texts] == ["image", "ground truth", *(m.name for m in models)]
    assert fig.get_size_inches()[0] < with_gt.get_size_inches()[0]  # one column fewer
    mixed = [rows[0], _qualitative([m.name for m in models])[1]]
    with pytest.raises(ValueError, match="qualitative row 1: has ground truth, row 0 has none"):
        write_report(tmp_path, models, mixed, CLASSES, class_palette(19), {})
