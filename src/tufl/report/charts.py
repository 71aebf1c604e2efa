"""Charts drawn with matplotlib's Agg backend: grouped bars, line panels and image grids.

Figures are built with :class:`~matplotlib.figure.Figure` directly (no pyplot, no
global state); sizes are in pixels at :data:`DPI`. :func:`save_png` writes a figure
without metadata, so the same data always give the same bytes.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Affine2D
from PIL import Image

Colour = tuple[int, int, int]

DPI = 100
# Okabe & Ito's colour-blind-safe palette, in the order series take it.
SERIES_COLOURS: tuple[Colour, ...] = (
    (0, 114, 178),  # blue
    (230, 159, 0),  # orange
    (0, 158, 115),  # bluish green
    (204, 121, 167),  # reddish purple
    (86, 180, 233),  # sky blue
    (213, 94, 0),  # vermillion
    (240, 228, 66),  # yellow
    (0, 0, 0),  # black
)
TEXT = "#222222"
MUTED = "#555555"
GRID = "#e2e2e2"
TITLE_PT = 13
LABEL_PT = 10
TICK_PT = 9
VALUE_PT = 7
PAD = 12  # pixels around an image grid
LINE_WIDTH = 1.8


def bar_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    title: str,
    y_label: str,
    y_max: float | None = None,
    size: tuple[int, int] = (1200, 520),
    value_format: str | None = "{:.1f}",
    nan_label: str = "n/a",
) -> Figure:
    """Bars of every series side by side for each category, legend under the title.

    A NaN value draws no bar and is labelled ``nan_label``. ``y_max`` fixes the top of the
    axis (default: a round value above the data). ``value_format`` labels each bar
    (None: no labels). Long category names are slanted.
    """
    if not categories:
        raise ValueError("bar_chart: no categories")
    if not series:
        raise ValueError("bar_chart: no series")
    for name, values in series.items():
        if len(values) != len(categories):
            raise ValueError(f"bar_chart: series {name!r} has {len(values)} values for {len(categories)} categories")
    _check_size(size)
    data = np.asarray([list(v) for v in series.values()], dtype=np.float64)
    finite = data[np.isfinite(data)]
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    if y_max is not None and not y_max > lo:
        raise ValueError(f"bar_chart: y_max={y_max} is not above the lowest value {lo}")
    ticks = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(
        lo, y_max if y_max is not None else max(float(finite.max()) if finite.size else 1.0, lo + 1e-12)
    )
    hi = y_max if y_max is not None else float(ticks[-1])

    fig = _new_figure(size)
    fig.suptitle(title, fontsize=TITLE_PT, fontweight="bold", color=TEXT)
    ax = fig.add_subplot()
    x = np.arange(len(categories))
    slot_px = size[0] * 0.85 / len(categories)
    width = 0.8 / len(series)
    for s, (name, values) in enumerate(zip(series, data)):
        colour = _rgb(SERIES_COLOURS[s % len(SERIES_COLOURS)])
        bars = ax.bar(x + (s - (len(series) - 1) / 2) * width, np.where(np.isfinite(values), values, 0.0),
                      width * 0.95, label=name, color=colour)
        if value_format is not None:
            labels = [value_format.format(v) if math.isfinite(v) else nan_label for v in values]
            flat = max(map(len, labels)) * 5 <= slot_px * width
            ax.bar_label(bars, labels, padding=2, fontsize=VALUE_PT, color=TEXT, rotation=0 if flat else 90)
    ax.set_ylim(lo, hi + (0.1 * (hi - lo) if value_format is not None else 0.0))  # room for the labels
    ax.set_yticks([t for t in ticks if lo <= t <= hi + 1e-9 * (hi - lo)])
    slanted = max(len(c) for c in categories) * 7 > slot_px
    ax.set_xticks(x, list(categories), rotation=45 if slanted else 0, ha="right" if slanted else "center",
                  rotation_mode="anchor")
    ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.set_ylabel(y_label, fontsize=LABEL_PT, color=TEXT)
    _style(ax, grid_axis="y")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(series), frameon=False, fontsize=LABEL_PT)
    return fig


@dataclass(frozen=True)
class LinePanel:
    """One plot of :func:`line_panels`: ``series`` maps a name to ``(x values, y values)``.

    ``colours`` overrides the default palette per name; with ``log_y``, values <= 0
    are left out; ``integer_x`` puts the x ticks on whole numbers (iterations).
    """

    title: str
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]]
    x_label: str
    y_label: str
    log_y: bool = False
    colours: Mapping[str, Colour] = field(default_factory=dict)
    integer_x: bool = False


def line_panels(panels: Sequence[LinePanel], width: int = 1000, panel_height: int = 320) -> Figure:
    """The panels one under the other, each with its legend at its right.

    Non-finite points break a line; series of at most 30 points get a dot per point.
    """
    if not panels:
        raise ValueError("line_panels: no panels")
    _check_size((width, panel_height))
    fig = _new_figure((width, panel_height * len(panels)))
    for panel, ax in zip(panels, fig.subplots(len(panels), 1, squeeze=False)[:, 0]):
        _draw_panel(ax, panel)
    return fig


def _draw_panel(ax: Axes, panel: LinePanel) -> None:
    defaults = itertools.cycle(SERIES_COLOURS)
    for name, (xs, ys) in panel.series.items():
        if len(xs) != len(ys):
            raise ValueError(f"line chart: series {name!r} has {len(xs)} x values and {len(ys)} y values")
        x = np.asarray(xs, dtype=np.float64)
        y = np.asarray(ys, dtype=np.float64)
        if panel.log_y:
            y = np.where(y > 0, y, np.nan)
        colour = panel.colours[name] if name in panel.colours else next(defaults)
        # A dark rim keeps pale lines visible on white.
        rim = [patheffects.withStroke(linewidth=LINE_WIDTH + 1.6, foreground=_rgb(_darker(colour)))]
        points = int((np.isfinite(x) & np.isfinite(y)).sum())
        ax.plot(x, y, color=_rgb(colour), linewidth=LINE_WIDTH, label=name,
                marker="o" if points <= 30 else None, markersize=3.5,
                path_effects=rim if _luminance(colour) > 0.7 else [])
    if panel.log_y:
        ax.set_yscale("log")
    if panel.integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(panel.title, fontsize=TITLE_PT - 1, fontweight="bold", color=TEXT)
    ax.set_xlabel(panel.x_label, fontsize=LABEL_PT, color=TEXT)
    ax.set_ylabel(panel.y_label, fontsize=LABEL_PT, color=TEXT)
    _style(ax, grid_axis="both")
    if panel.series:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=TICK_PT,
                  ncol=math.ceil(len(panel.series) / 20))


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    column_titles: Sequence[str],
    cell_size: tuple[int, int] | None = None,
    gap: int = 6,
    legend: Mapping[str, Colour] | None = None,
) -> Figure:
    """``HxWx3`` uint8 cells in a grid, pixel for pixel, with titles above the columns.

    Cells are pasted unscaled unless ``cell_size = (w, h)`` is given (then enlarged
    with nearest-neighbour, shrunk with area averaging); without it all cells must
    share one size. ``legend`` maps names to colour swatches shown under the grid.
    """
    mosaic = _mosaic(rows, len(column_titles), cell_size, gap)
    cell_w = (mosaic.shape[1] - gap * (len(column_titles) - 1)) // len(column_titles)
    titles = [textwrap.fill(t, max(8, cell_w // 7)) for t in column_titles]
    title_h = max(t.count("\n") + 1 for t in titles) * 17
    width = mosaic.shape[1] + 2 * PAD
    fig = _new_figure((width, 100), constrained=False)
    bottom = math.ceil(_swatch_legend(fig, legend, width - 2 * PAD)) + 4 if legend else PAD
    fig.set_size_inches(width / DPI, (bottom + mosaic.shape[0] + 6 + title_h + PAD) / DPI)
    fig.figimage(mosaic, xo=PAD, yo=bottom, origin="upper")
    pixels = Affine2D().scale(1 / DPI) + fig.dpi_scale_trans
    for c, title in enumerate(titles):
        fig.text(PAD + c * (cell_w + gap) + cell_w / 2, bottom + mosaic.shape[0] + 6, title, transform=pixels,
                 ha="center", va="bottom", multialignment="center", fontsize=LABEL_PT, color=TEXT)
    return fig


def save_png(fig: Figure, target: str | Path | BinaryIO) -> None:
    """Write ``fig`` as a PNG at :data:`DPI` without metadata (same figure, same bytes)."""
    fig.savefig(target, format="png", dpi=DPI, metadata={"Software": None}, pil_kwargs={"optimize": True})


# --------------------------------------------------------------------------- helpers


def _check_size(size: tuple[int, int]) -> None:
    if len(size) != 2 or size[0] < 200 or size[1] < 150:
        raise ValueError(f"chart size must be (width >= 200, height >= 150) pixels, got {size}")


def _new_figure(size: tuple[int, int], constrained: bool = True) -> Figure:
    """A white figure of ``size`` pixels on an Agg canvas, laid out by constrained layout unless told not to."""
    layout = ConstrainedLayoutEngine(w_pad=8 / DPI, h_pad=10 / DPI, hspace=0.04) if constrained else None
    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, facecolor="white", layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _style(ax: Axes, grid_axis: str) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.spines[["left", "bottom"]].set_color(MUTED)
    ax.tick_params(labelsize=TICK_PT, colors=MUTED, labelcolor=TEXT)
    ax.grid(axis=grid_axis, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)


def _swatch_legend(fig: Figure, swatches: Mapping[str, Colour], max_width: float) -> float:
    """A legend of colour swatches at the bottom, in as many columns as fit; return its top in pixels."""
    handles = [Patch(facecolor=_rgb(c), edgecolor=MUTED, label=name) for name, c in swatches.items()]
    renderer = fig.canvas.get_renderer()
    for ncol in range(len(handles), 0, -1):
        legend = fig.legend(handles=handles, ncol=ncol, loc="lower center", bbox_to_anchor=(0.5, 0.0),
                            frameon=False, fontsize=LABEL_PT, handlelength=1.2, columnspacing=1.6)
        box = legend.get_window_extent(renderer)
        if box.width <= max_width or ncol == 1:
            return float(box.y1)
        legend.remove()
    return 0.0


def _mosaic(
    rows: Sequence[Sequence[np.ndarray]], ncol: int, cell_size: tuple[int, int] | None, gap: int
) -> np.ndarray:
    """The cells pasted into one white ``HxWx3`` array, ``gap`` pixels apart."""
    if not rows:
        raise ValueError("image_grid: no rows")
    if gap < 0:
        raise ValueError(f"image_grid: gap must be >= 0, got {gap}")
    shapes = set()
    for r, row in enumerate(rows):
        if len(row) != ncol:
            raise ValueError(f"image_grid: row {r} has {len(row)} cells for {ncol} columns")
        for c, cell in enumerate(row):
            if not (isinstance(cell, np.ndarray) and cell.dtype == np.uint8 and cell.ndim == 3 and cell.shape[2] == 3):
                raise ValueError(f"image_grid: cell ({r}, {c}) must be an HxWx3 uint8 array")
            shapes.add(cell.shape[:2])
    if cell_size is None:
        if len(shapes) > 1:
            raise ValueError(f"image_grid: cells differ in size {sorted(shapes)}; pass cell_size")
        ch, cw = shapes.pop()
    else:
        cw, ch = cell_size
        if cw < 1 or ch < 1:
            raise ValueError(f"image_grid: cell_size must be positive, got {cell_size}")
    out = np.full((len(rows) * (ch + gap) - gap, ncol * (cw + gap) - gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            y, x = r * (ch + gap), c * (cw + gap)
            out[y : y + ch, x : x + cw] = _fit(cell, (cw, ch))
    return out


def _fit(cell: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if cell.shape[1::-1] == size:
        return cell
    image = Image.fromarray(np.ascontiguousarray(cell))
    enlarge = size[0] >= image.width and size[1] >= image.height
    return np.asarray(image.resize(size, Image.NEAREST if enlarge else Image.BOX))


def _rgb(colour: Colour) -> tuple[float, float, float]:
    return tuple(v / 255.0 for v in colour)  # type: ignore[return-value]


def _luminance(colour: Colour) -> float:
    r, g, b = colour
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255.0


def _darker(colour: Colour) -> Colour:
    """``colour`` darkened to stand out on white."""
    factor = min(1.0, 0.45 / max(_luminance(colour), 1e-6))
    return tuple(int(v * factor) for v in colour)  # type: ignore[return-value]
