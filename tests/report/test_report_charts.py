"""Tests of the report's matplotlib charts (tufl.report.charts): bars, line panels, image grids."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from tufl.report.charts import SERIES_COLOURS, LinePanel, bar_chart, image_grid, line_panels, save_png

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
