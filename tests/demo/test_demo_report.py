"""Tests of the demo's matplotlib charts and its HTML report."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from tufl.data.labels import palette as class_palette
from tufl.demo.charts import SERIES_COLOURS, LinePanel, bar_chart, image_grid, line_panels, save_png
from tufl.demo.report import ModelReport, QualitativeRow, write_report
from tufl.demo.report_figures import colourize, loss_figure, moving_average, threshold_figure
from tufl.demo.report_html import format_duration, format_percent

BLUE = SERIES_COLOURS[0]


def render(fig: Figure) -> Image.Image:
    buffer = io.BytesIO()
    save_png(fig, buffer)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.convert("RGB")


def plot_area(fig: Figure, image: Image.Image, index: int = 0) -> np.ndarray:
    """The pixels inside the frame of the figure's ``index``-th axes (after ``render``)."""
    box = fig.axes[index].get_window_extent()
    h = image.height
    return np.asarray(image)[int(h - box.y1) + 2 : int(h - box.y0) - 1, int(box.x0) + 2 : int(box.x1) - 1]


def colour_mask(pixels: Image.Image | np.ndarray, colour: tuple[int, int, int], tol: int = 0) -> np.ndarray:
    array = np.asarray(pixels.convert("RGB") if isinstance(pixels, Image.Image) else pixels).astype(np.int16)
    return np.abs(array - np.array(colour, dtype=np.int16)).max(axis=-1) <= tol


def column_groups(mask: np.ndarray) -> list[np.ndarray]:
    """Runs of adjacent image columns that contain masked pixels."""
    cols = np.flatnonzero(mask.any(axis=0))
    return np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1) if cols.size else []


def find_block(image: np.ndarray, block: np.ndarray) -> list[tuple[int, int]]:
    windows = np.lib.stride_tricks.sliding_window_view(image, block.shape)[:, :, 0]
    ys, xs = np.nonzero((windows == block).all(axis=(-3, -2, -1)))
    return list(zip(ys.tolist(), xs.tolist()))


# --------------------------------------------------------------------------- bar chart


def test_bar_chart_size_and_bar_heights_proportional_to_values():
    fig = bar_chart(["a", "b"], {"s": [1.0, 0.5]}, "t", "y", y_max=1.0, size=(400, 300), value_format=None)
    image = render(fig)
    assert image.size == (400, 300)
    mask = colour_mask(plot_area(fig, image), BLUE)
    groups = column_groups(mask)
    assert len(groups) == 2
    tops, bottoms = [], []
    for cols in groups:
        rows = np.flatnonzero(mask[:, cols].all(axis=1))  # rows fully covered across the bar's width
        tops.append(rows.min())
        bottoms.append(rows.max())
    assert abs(bottoms[0] - bottoms[1]) <= 1
    height_full, height_half = bottoms[0] - tops[0], bottoms[1] - tops[1]
    assert tops[0] < tops[1]
    assert height_full / height_half == pytest.approx(2.0, rel=0.05)


def test_bar_chart_groups_series_side_by_side_and_marks_nan():
    orange = SERIES_COLOURS[1]
    fig = bar_chart(["first", "second"], {"p": [0.8, math.nan], "q": [0.4, 0.6]}, "t", "IoU", y_max=1.0, size=(500, 320))
    plot = plot_area(fig, render(fig))
    blue, yellow = colour_mask(plot, BLUE), colour_mask(plot, orange)
    middle = plot.shape[1] // 2
    assert blue[:, :middle].sum() > 200 and yellow[:, :middle].sum() > 200
    assert yellow[:, middle:].sum() > 200
    assert blue[:, middle:].sum() == 0  # the NaN bar is a gap...
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels.count("n/a") == 1 and "0.8" in labels  # ...labelled "n/a"
    # Within the first group, series p is left of series q.
    assert np.flatnonzero(blue[:, :middle].any(0)).mean() < np.flatnonzero(yellow[:, :middle].any(0)).mean()
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["p", "q"]


def test_bar_chart_fits_nineteen_long_names_and_rejects_bad_series():
    names = [f"class name {i}" for i in range(19)]
    fig = bar_chart(names, {"a": list(np.linspace(0, 1, 19))}, "t", "y")
    assert render(fig).size == (1200, 520)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == names
    with pytest.raises(ValueError, match="series 'a' has 2 values for 3 categories"):
        bar_chart(["x", "y", "z"], {"a": [1, 2]}, "t", "y")
    with pytest.raises(ValueError, match="no series"):
        bar_chart(["x"], {}, "t", "y")


# --------------------------------------------------------------------------- line chart


def _line_rows(fig: Figure, image: Image.Image) -> tuple[float, float, float]:
    """Mean row of the blue line at its left end, middle and right end."""
    mask = colour_mask(plot_area(fig, image), BLUE, tol=40)
    cols = np.flatnonzero(mask.any(axis=0))
    left, right = cols.min(), cols.max()
    mid = (left + right) // 2

    def row_at(c0: int, c1: int) -> float:
        ys, _ = np.nonzero(mask[:, c0:c1])
        return float(ys.mean())

    return row_at(left, left + 3), row_at(mid - 1, mid + 2), row_at(right - 2, right + 1)


def test_line_chart_linear_and_log_axes():
    series = {"s": ([0, 1, 2], [1.0, 10.0, 100.0])}
    linear = line_panels([LinePanel("t", series, "x", "y")], width=500, panel_height=360)
    log = line_panels([LinePanel("t", series, "x", "y", log_y=True)], width=500, panel_height=360)
    linear_image, log_image = render(linear), render(log)
    assert linear_image.size == log_image.size == (500, 360)
    left, mid, right = _line_rows(log, log_image)
    assert left > right  # larger values are higher up
    assert mid == pytest.approx((left + right) / 2, abs=2)  # straight on a log axis
    left, mid, right = _line_rows(linear, linear_image)
    assert mid - (left + right) / 2 > 40  # 10 sits near the bottom of a linear 0..100 axis


def test_line_chart_colours_legend_panels_and_bad_series():
    red = (200, 30, 30)
    xs = list(range(50))
    ys = [float(x) if x != 25 else math.nan for x in xs]
    panel = LinePanel("t", {"a": (xs, ys), "b": (xs, ys[::-1])}, "x", "y", colours={"a": red})
    fig = line_panels([panel, panel])
    image = render(fig)
    assert image.size == (1000, 640)  # one 320-pixel panel per entry
    for index in range(2):
        plot = plot_area(fig, image, index)
        assert colour_mask(plot, red, tol=30).sum() > 100
        assert colour_mask(plot, BLUE, tol=30).sum() > 100  # "b" takes the first default colour
        assert [t.get_text() for t in fig.axes[index].get_legend().get_texts()] == ["a", "b"]
    with pytest.raises(ValueError, match="series 'a' has 2 x values and 1 y values"):
        line_panels([LinePanel("t", {"a": ([0, 1], [1.0])}, "x", "y")])


# --------------------------------------------------------------------------- image grid


def test_image_grid_places_every_cell_at_its_offset():
    rng = np.random.default_rng(0)
    h, w, gap = 10, 14, 5
    cells = [[rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(3)] for _ in range(2)]
    image = np.asarray(render(image_grid(cells, ["image", "ground truth", "model"], gap=gap)))
    hits = find_block(image, cells[0][0])
    assert len(hits) == 1
    y0, x0 = hits[0]
    for r in range(2):
        for c in range(3):
            y, x = y0 + r * (h + gap), x0 + c * (w + gap)
            np.testing.assert_array_equal(image[y : y + h, x : x + w], cells[r][c])
    assert image[:y0].min() < 128  # column titles are drawn above the cells


def test_image_grid_enlarges_cells_with_nearest_neighbour():
    rng = np.random.default_rng(1)
    cells = [[rng.integers(0, 256, (4, 6, 3), dtype=np.uint8) for _ in range(2)]]
    image = np.asarray(render(image_grid(cells, ["a", "b"], cell_size=(12, 8), gap=3)))
    (y0, x0), = find_block(image, cells[0][0].repeat(2, axis=0).repeat(2, axis=1))
    np.testing.assert_array_equal(image[y0 : y0 + 8, x0 + 15 : x0 + 27], cells[0][1].repeat(2, 0).repeat(2, 1))


def test_image_grid_rejects_bad_cells():
    cell = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="differ in size"):
        image_grid([[cell, np.zeros((5, 4, 3), np.uint8)]], ["a", "b"])
    with pytest.raises(ValueError, match=r"cell \(0, 0\) must be an HxWx3 uint8"):
        image_grid([[cell.astype(np.float32)]], ["a"])
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 columns"):
        image_grid([[cell]], ["a", "b"])


def test_image_grid_legend_swatches_under_the_cells():
    colours = {"road": (128, 64, 128), "person": (220, 20, 60)}
    cells = [[np.zeros((40, 60, 3), np.uint8)] * 2]
    image = np.asarray(render(image_grid(cells, ["a", "b"], legend=colours)))
    grid_rows = np.flatnonzero((image == 0).all(axis=-1).sum(axis=1) >= 120)  # the two black cells
    assert grid_rows.size == 40
    for colour in colours.values():
        rows = np.flatnonzero(colour_mask(image, colour).any(axis=1))
        assert rows.size > 5 and rows.min() > grid_rows.max()


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
    expected = {"index.html", "summary.json", "miou_per_class.png", "qualitative.png", "loss_curves.png", "thresholds.png"}
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
