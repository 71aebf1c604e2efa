"""Charts drawn with Pillow alone: grouped bars, line plots and image grids.

Vector elements (bars, lines, text) are drawn at twice the requested size and
reduced by 2x2 averaging, which anti-aliases them; flat areas keep their exact
colour. Text uses Pillow's built-in font: scalable from Pillow 10.1 on, the fixed
bitmap font before. The built-in font covers ASCII only, so chart text should be
ASCII.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont

Colour = tuple[int, int, int]
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont

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

BACKGROUND: Colour = (255, 255, 255)
TEXT: Colour = (34, 34, 34)
MUTED: Colour = (105, 105, 105)
AXIS: Colour = (90, 90, 90)
GRID: Colour = (226, 226, 226)

TITLE_PX = 18
LABEL_PX = 13
TICK_PX = 12
VALUE_PX = 10
PAD = 12
_SUPERSAMPLE = 2


def nice_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Evenly spaced round values (step 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"tick range must be finite, got [{lo}, {hi}]")
    if max_ticks < 2:
        raise ValueError(f"max_ticks must be at least 2, got {max_ticks}")
    lo, hi = min(lo, hi), max(lo, hi)
    if hi == lo:
        margin = abs(lo) * 0.1 or 1.0
        lo, hi = lo - margin, hi + margin
    step = _nice_step((hi - lo) / (max_ticks - 1))
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    decimals = max(0, 3 - math.floor(math.log10(step)))
    return [round(k * step, decimals) for k in range(first, last + 1)]


def grouped_bar_chart(
    categories: Sequence[str],
    series: dict[str, Sequence[float]],
    title: str,
    y_label: str,
    y_max: float | None = None,
    size: tuple[int, int] = (1200, 520),
    colours: Sequence[Colour] | None = None,
    value_format: str | None = "{:.1f}",
) -> Image.Image:
    """Bars of every series side by side for each category.

    NaN values leave a gap marked "n/a". ``y_max`` fixes the top of the axis
    (default: a round value above the data); taller bars are cut at the top.
    Category labels are written flat, wrapped at spaces, or slanted, whichever
    fits. ``value_format`` labels each bar (None: no value labels).
    """
    _check_size(size)
    if not categories:
        raise ValueError("grouped_bar_chart: no categories")
    if not series:
        raise ValueError("grouped_bar_chart: no series")
    for name, values in series.items():
        if len(values) != len(categories):
            raise ValueError(
                f"grouped_bar_chart: series {name!r} has {len(values)} values for {len(categories)} categories"
            )
    colours = _series_colours(len(series), colours)
    data = np.asarray([list(v) for v in series.values()], dtype=np.float64)
    finite = data[np.isfinite(data)]
    data_lo = min(0.0, float(finite.min())) if finite.size else 0.0
    data_hi = float(finite.max()) if finite.size else 1.0
    if y_max is not None and not y_max > data_lo:
        raise ValueError(f"grouped_bar_chart: y_max={y_max} is not above the lowest value {data_lo}")
    ticks = nice_ticks(data_lo, y_max if y_max is not None else max(data_hi, data_lo + 1e-12))
    y_lo = ticks[0]
    y_hi = y_max if y_max is not None else ticks[-1]
    ticks = [t for t in ticks if t <= y_hi + 1e-9 * (y_hi - y_lo)]

    canvas = _Canvas(size)
    width, height = size
    top = _draw_title(canvas, title)
    top = _draw_legend(canvas, list(series), colours, top, swatch="box") + 4
    if value_format is not None:
        sample = max((value_format.format(v) for v in finite), key=len, default="0")
        top += canvas.text_size(sample, VALUE_PX)[0] + 6  # room for labels above the tallest bars

    tick_labels = [_format_tick(t, _step_of(ticks)) for t in ticks]
    left = PAD + canvas.text_size(y_label, LABEL_PX)[1] + 8
    left += max(canvas.text_size(t, TICK_PX)[0] for t in tick_labels) + 8
    right = width - PAD
    layout = _category_layout(canvas, categories, left, right)
    bottom = height - PAD - layout.height
    if bottom - top < 40:
        raise ValueError(f"grouped_bar_chart: size {size} leaves no room for the plot")
    left = layout.left
    slot = (right - left) / len(categories)

    def y_of(value: float) -> float:
        frac = (value - y_lo) / (y_hi - y_lo)
        return bottom - min(max(frac, 0.0), 1.0) * (bottom - top)

    for tick, label in zip(ticks, tick_labels):
        y = y_of(tick)
        canvas.line([(left, y), (right, y)], GRID, 1)
        canvas.text((left - 6, y), label, TICK_PX, MUTED, anchor="rm")
    canvas.text((PAD, (top + bottom) / 2), y_label, LABEL_PX, TEXT, anchor="lm", angle=90)

    group = slot * 0.8
    bar = group / len(series)
    base = y_of(0.0)
    for c in range(len(categories)):
        centre = left + slot * (c + 0.5)
        for s, colour in enumerate(colours):
            x0 = centre - group / 2 + s * bar
            x1 = x0 + bar
            cx = (x0 + x1) / 2
            value = float(data[s, c])
            if not math.isfinite(value):
                canvas.text((cx, base - 3), "n/a", VALUE_PX, _readable(colour), anchor="mb", angle=90)
                continue
            y = y_of(value)
            canvas.rect((x0 + 0.5, min(y, base), x1 - 0.5, max(y, base)), colour)
            if value_format is not None:
                text = value_format.format(value)
                flat = canvas.text_size(text, VALUE_PX)[0] <= bar + 2
                anchor_y = min(y, base) - 3 if value >= 0 else max(y, base) + 3
                vertical_anchor = "b" if value >= 0 else "t"
                canvas.text((cx, anchor_y), text, VALUE_PX, TEXT, anchor="m" + vertical_anchor, angle=0 if flat else 90)
    canvas.line([(left, base), (right, base)], AXIS, 1)
    canvas.line([(left, top), (left, bottom)], AXIS, 1)
    layout.draw(canvas, categories, left, slot, bottom)
    return canvas.result()


def line_chart(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    x_label: str,
    y_label: str,
    size: tuple[int, int] = (1000, 420),
    log_y: bool = False,
    colours: dict[str, Colour] | None = None,
    end_labels: bool = False,
) -> Image.Image:
    """One line per series, given as ``name -> (x values, y values)``.

    Non-finite points (and, with ``log_y``, values <= 0) break a line. Series of
    at most 30 points also get a dot per point. The names appear in a legend
    under the title, or, with ``end_labels``, next to the last point of each line
    (better for many lines). ``colours`` overrides the default palette per name.
    """
    _check_size(size)
    colour_of = _line_colours(series, colours)
    xs_all: list[float] = []
    ys_all: list[float] = []
    clean: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (xs, ys) in series.items():
        if len(xs) != len(ys):
            raise ValueError(f"line_chart: series {name!r} has {len(xs)} x values and {len(ys)} y values")
        x = np.asarray(xs, dtype=np.float64)
        y = np.asarray(ys, dtype=np.float64)
        valid = np.isfinite(x) & np.isfinite(y) & ((y > 0) if log_y else True)
        y = np.where(valid, y, np.nan)
        clean[name] = (x, y)
        xs_all += x[valid].tolist()
        ys_all += y[valid].tolist()

    x_ticks = nice_ticks(min(xs_all, default=0.0), max(xs_all, default=1.0), max_ticks=8)
    if log_y:
        y_ticks, y_lo, y_hi = _log_ticks(min(ys_all, default=0.1), max(ys_all, default=1.0))
        y_labels = [f"{t:g}" for t in y_ticks]
    else:
        y_ticks = nice_ticks(min(ys_all, default=0.0), max(ys_all, default=1.0))
        y_lo, y_hi = y_ticks[0], y_ticks[-1]
        y_labels = [_format_tick(t, _step_of(y_ticks)) for t in y_ticks]
    x_lo, x_hi = x_ticks[0], x_ticks[-1]
    x_labels = [_format_tick(t, _step_of(x_ticks)) for t in x_ticks]

    canvas = _Canvas(size)
    width, height = size
    names = list(series)
    top = _draw_title(canvas, title)
    if not end_labels:
        top = _draw_legend(canvas, names, [colour_of[n] for n in names], top, swatch="line")
    top += 8
    left = PAD + canvas.text_size(y_label, LABEL_PX)[1] + 8
    left += max(canvas.text_size(t, TICK_PX)[0] for t in y_labels) + 8
    label_w = max((canvas.text_size(n, TICK_PX)[0] for n in names), default=0.0)
    right = width - PAD - (label_w + 30 if end_labels and names else canvas.text_size(x_labels[-1], TICK_PX)[0] / 2)
    bottom = height - PAD - canvas.text_size(x_label, LABEL_PX)[1] - canvas.text_size("0", TICK_PX)[1] - 14
    if bottom - top < 40 or right - left < 60:
        raise ValueError(f"line_chart: size {size} leaves no room for the plot")

    def x_of(value: np.ndarray) -> np.ndarray:
        return left + (value - x_lo) / (x_hi - x_lo) * (right - left)

    def y_of(value: np.ndarray) -> np.ndarray:
        if log_y:
            frac = (np.log10(value) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo))
        else:
            frac = (value - y_lo) / (y_hi - y_lo)
        return bottom - frac * (bottom - top)

    for tick, label in zip(y_ticks, y_labels):
        y = float(y_of(np.float64(tick)))
        canvas.line([(left, y), (right, y)], GRID, 1)
        canvas.text((left - 6, y), label, TICK_PX, MUTED, anchor="rm")
    for tick, label in zip(x_ticks, x_labels):
        x = float(x_of(np.float64(tick)))
        canvas.line([(x, top), (x, bottom)], GRID, 1)
        canvas.line([(x, bottom), (x, bottom + 4)], AXIS, 1)
        canvas.text((x, bottom + 6), label, TICK_PX, MUTED, anchor="mt")
    canvas.text((PAD, (top + bottom) / 2), y_label, LABEL_PX, TEXT, anchor="lm", angle=90)
    canvas.text(((left + right) / 2, height - PAD), x_label, LABEL_PX, TEXT, anchor="mb")

    line_width = 2.0 if len(series) <= 8 else 1.6
    ends: list[tuple[str, float]] = []
    for name, (x, y) in clean.items():
        colour = colour_of[name]
        px, py = x_of(x), y_of(y)
        for run in _finite_runs(py):
            points = list(zip(px[run].tolist(), py[run].tolist()))
            if len(points) > 1:
                if _luminance(colour) > 0.7:  # a dark rim keeps pale lines visible on white
                    canvas.line(points, _readable(colour), line_width + 1.4)
                canvas.line(points, colour, line_width)
        finite = np.flatnonzero(np.isfinite(py))
        if finite.size and finite.size <= 30:
            for i in finite:
                canvas.circle((float(px[i]), float(py[i])), line_width + 1.2, colour)
        if finite.size:
            ends.append((name, float(py[finite[-1]])))
    canvas.line([(left, bottom), (right, bottom)], AXIS, 1)
    canvas.line([(left, top), (left, bottom)], AXIS, 1)
    if end_labels:
        _draw_end_labels(canvas, ends, colour_of, right + 8, top, bottom)
    return canvas.result()


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    column_titles: Sequence[str],
    row_titles: Sequence[str] | None = None,
    cell_size: tuple[int, int] | None = None,
    gap: int = 6,
) -> Image.Image:
    """Paste ``HxWx3`` uint8 cells in a grid, with titles above the columns.

    Cell ``(r, c)`` lies at ``origin + (c * (w + gap), r * (h + gap))``. Cells are
    pasted unscaled unless ``cell_size = (w, h)`` is given (then enlarged with
    nearest-neighbour, shrunk with area averaging); without it all cells must
    share one size.
    """
    if not rows:
        raise ValueError("image_grid: no rows")
    if gap < 0:
        raise ValueError(f"image_grid: gap must be >= 0, got {gap}")
    if row_titles is not None and len(row_titles) != len(rows):
        raise ValueError(f"image_grid: {len(row_titles)} row titles for {len(rows)} rows")
    shapes = set()
    for r, row in enumerate(rows):
        if len(row) != len(column_titles):
            raise ValueError(f"image_grid: row {r} has {len(row)} cells for {len(column_titles)} columns")
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

    measure = _Canvas((1, 1), scale=1)
    wrapped = [_wrap(measure, t, cw, LABEL_PX) for t in column_titles]
    line_h = measure.text_size("Hg", LABEL_PX)[1] + 2
    title_h = max((len(lines) for lines in wrapped), default=0) * line_h
    row_w = max((measure.text_size(t, LABEL_PX)[0] for t in row_titles), default=0.0) + 10 if row_titles else 0
    x0 = PAD + math.ceil(row_w)
    y0 = PAD + math.ceil(title_h) + (6 if title_h else 0)
    ncol = len(column_titles)
    width = x0 + ncol * cw + (ncol - 1) * gap + PAD
    height = y0 + len(rows) * ch + (len(rows) - 1) * gap + PAD

    canvas = _Canvas((width, height), scale=1)
    for c, lines in enumerate(wrapped):
        cx = x0 + c * (cw + gap) + cw / 2
        for i, line in enumerate(lines):
            canvas.text((cx, y0 - 6 - (len(lines) - i - 1) * line_h), line, LABEL_PX, TEXT, anchor="mb")
    for r, row in enumerate(rows):
        y = y0 + r * (ch + gap)
        if row_titles is not None:
            canvas.text((PAD, y + ch / 2), row_titles[r], LABEL_PX, TEXT, anchor="lm")
        for c, cell in enumerate(row):
            canvas.image.paste(_fit(cell, (cw, ch)), (x0 + c * (cw + gap), y))
    return canvas.result()


def class_legend(names: Sequence[str], colours: Sequence[Colour], width: int) -> Image.Image:
    """Colour swatches with names, flowing over as many rows as ``width`` needs."""
    if len(names) != len(colours):
        raise ValueError(f"class_legend: {len(names)} names for {len(colours)} colours")
    measure = _Canvas((1, 1))
    rows = _flow(measure, list(names), width - 2 * PAD, swatch_w=14)
    row_h = measure.text_size("Hg", LABEL_PX)[1] + 8
    canvas = _Canvas((width, max(1, math.ceil(len(rows) * row_h + PAD))))
    for r, row in enumerate(rows):
        x = PAD
        y = PAD / 2 + r * row_h + row_h / 2
        for i, item_w in row:
            canvas.rect((x, y - 7, x + 14, y + 7), tuple(colours[i]), outline=AXIS)
            canvas.text((x + 20, y), names[i], LABEL_PX, TEXT, anchor="lm")
            x += item_w
    return canvas.result()


def stack_vertical(images: Sequence[Image.Image], gap: int = 8) -> Image.Image:
    """Images one under the other, centred, on a white background."""
    if not images:
        raise ValueError("stack_vertical: no images")
    width = max(im.width for im in images)
    height = sum(im.height for im in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (width, height), BACKGROUND)
    y = 0
    for im in images:
        out.paste(im.convert("RGB"), ((width - im.width) // 2, y))
        y += im.height + gap
    return out


# --------------------------------------------------------------------------- drawing surface


class _Canvas:
    """An RGB image addressed in output pixels, drawn ``scale`` times larger then reduced."""

    def __init__(self, size: tuple[int, int], scale: int = _SUPERSAMPLE) -> None:
        self.scale = scale
        self.image = Image.new("RGB", (size[0] * scale, size[1] * scale), BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)

    def _s(self, value: float) -> int:
        return int(round(value * self.scale))

    def line(self, points: Sequence[tuple[float, float]], fill: Colour, width: float) -> None:
        scaled = [(self._s(x), self._s(y)) for x, y in points]
        self.draw.line(scaled, fill=fill, width=max(1, self._s(width)), joint="curve" if len(scaled) > 2 else None)

    def rect(self, box: tuple[float, float, float, float], fill: Colour, outline: Colour | None = None) -> None:
        x0, y0, x1, y1 = (self._s(v) for v in box)
        if x1 > x0 and y1 > y0:
            self.draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill, outline=outline, width=self.scale if outline else 0)

    def circle(self, centre: tuple[float, float], radius: float, fill: Colour) -> None:
        x, y, r = self._s(centre[0]), self._s(centre[1]), self._s(radius)
        self.draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=BACKGROUND, width=max(1, self.scale // 2))

    def text_size(self, text: str, px: int) -> tuple[float, float]:
        """Width and line height of ``text`` (unrotated), in output pixels."""
        mask = self._text_mask(text, px)
        return mask.width / self.scale, mask.height / self.scale

    def text(
        self,
        xy: tuple[float, float],
        text: str,
        px: int,
        fill: Colour = TEXT,
        anchor: str = "lt",
        angle: float = 0,
        bold: bool = False,
    ) -> None:
        """Write ``text``; ``anchor`` = horizontal (l/m/r) + vertical (t/m/b) of its box at ``xy``.

        ``angle`` rotates counter-clockwise (degrees); the anchor refers to the box of
        the rotated text.
        """
        mask = self._text_mask(text, px)
        if bold:  # overlay a copy shifted one (supersampled) pixel to the right
            wide = Image.new("L", (mask.width + 1, mask.height), 0)
            shifted = wide.copy()
            wide.paste(mask, (0, 0))
            shifted.paste(mask, (1, 0))
            mask = ImageChops.lighter(wide, shifted)
        if angle:
            mask = mask.rotate(angle, resample=Image.BICUBIC, expand=True)
        x, y = self._s(xy[0]), self._s(xy[1])
        x -= {"l": 0, "m": mask.width // 2, "r": mask.width}[anchor[0]]
        y -= {"t": 0, "m": mask.height // 2, "b": mask.height}[anchor[1]]
        self.image.paste(fill, (x, y, x + mask.width, y + mask.height), mask)

    def _text_mask(self, text: str, px: int) -> Image.Image:
        font, scalable = _font(px * self.scale)
        return _render_text(text, font, 1 if scalable else self.scale)

    def result(self) -> Image.Image:
        return self.image.reduce(self.scale) if self.scale > 1 else self.image


@lru_cache(maxsize=32)
def _font(px: int) -> tuple[Font, bool]:
    """Pillow's built-in font at ``px`` pixels and whether it scales (Pillow >= 10.1 with FreeType)."""
    try:
        return ImageFont.load_default(size=px), True
    except (TypeError, ImportError, OSError, AttributeError):
        return ImageFont.load_default(), False


def _bbox(font: Font, text: str) -> tuple[int, int, int, int]:
    try:
        return tuple(int(v) for v in font.getbbox(text))  # type: ignore[return-value]
    except AttributeError:  # Pillow < 9.2 bitmap font
        w, h = font.getsize(text)  # type: ignore[union-attr]
        return 0, 0, w, h


@lru_cache(maxsize=4096)
def _render_text(text: str, font: Font, upscale: int) -> Image.Image:
    """An "L" mask of ``text`` whose height is the font's line box (so baselines line up)."""
    left, top, right, bottom = _bbox(font, text) if text else (0, 0, 0, 0)
    _, line_top, _, line_bottom = _bbox(font, "Hgjy|")
    top, bottom = min(top, line_top), max(bottom, line_bottom)
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, font=font, fill=255)
    if upscale > 1:
        mask = mask.resize((mask.width * upscale, mask.height * upscale), Image.NEAREST)
    return mask


# --------------------------------------------------------------------------- layout helpers


def _draw_title(canvas: _Canvas, title: str) -> float:
    """Write the title centred at the top; return the y below it."""
    width = canvas.image.width / canvas.scale
    canvas.text((width / 2, PAD), title, TITLE_PX, TEXT, anchor="mt", bold=True)
    return PAD + canvas.text_size(title, TITLE_PX)[1] + 6


def _flow(canvas: _Canvas, labels: list[str], max_width: float, swatch_w: float) -> list[list[tuple[int, float]]]:
    """Greedy rows of ``(index, item width)`` for swatch + label items."""
    rows: list[list[tuple[int, float]]] = [[]]
    used = 0.0
    for i, label in enumerate(labels):
        item = swatch_w + 6 + canvas.text_size(label, LABEL_PX)[0] + 20
        if rows[-1] and used + item > max_width:
            rows.append([])
            used = 0.0
        rows[-1].append((i, item))
        used += item
    return rows


def _draw_legend(
    canvas: _Canvas, labels: list[str], colours: Sequence[Colour], top: float, swatch: Literal["box", "line"]
) -> float:
    """Centred legend rows starting at ``top``; return the y below them."""
    if not labels:
        return top
    width = canvas.image.width / canvas.scale
    swatch_w = 12 if swatch == "box" else 22
    rows = _flow(canvas, labels, width - 2 * PAD, swatch_w)
    row_h = canvas.text_size("Hg", LABEL_PX)[1] + 6
    for r, row in enumerate(rows):
        x = (width - (sum(w for _, w in row) - 20)) / 2
        y = top + r * row_h + row_h / 2
        for i, item_w in row:
            if swatch == "box":
                canvas.rect((x, y - 6, x + 12, y + 6), colours[i])
            else:
                canvas.line([(x, y), (x + 22, y)], colours[i], 3)
            canvas.text((x + swatch_w + 6, y), labels[i], LABEL_PX, TEXT, anchor="lm")
            x += item_w
    return top + len(rows) * row_h


class _CategoryLayout:
    """How category labels under a bar chart are written: flat, wrapped or slanted."""

    def __init__(self, mode: Literal["flat", "wrapped", "slanted"], lines: list[list[str]], height: float, left: float):
        self.mode = mode
        self.lines = lines
        self.height = height
        self.left = left

    def draw(self, canvas: _Canvas, categories: Sequence[str], left: float, slot: float, bottom: float) -> None:
        line_h = canvas.text_size("Hg", TICK_PX)[1]
        for c, name in enumerate(categories):
            x = left + slot * (c + 0.5)
            canvas.line([(x, bottom), (x, bottom + 4)], AXIS, 1)
            if self.mode == "slanted":
                # The rotated box's top-right corner sits beyond the text's end; shift so the end meets the tick.
                shift = line_h * 0.35
                canvas.text((x + shift - 2, bottom + 8 - shift), name, TICK_PX, TEXT, anchor="rt", angle=45)
            else:
                for i, line in enumerate(self.lines[c]):
                    canvas.text((x, bottom + 6 + i * line_h), line, TICK_PX, TEXT, anchor="mt")


def _category_layout(canvas: _Canvas, categories: Sequence[str], left: float, right: float) -> _CategoryLayout:
    slot = (right - left) / len(categories)
    line_h = canvas.text_size("Hg", TICK_PX)[1]
    widths = [canvas.text_size(c, TICK_PX)[0] for c in categories]
    if max(widths) <= slot - 4:
        return _CategoryLayout("flat", [[c] for c in categories], line_h + 8, left)
    wrapped = [_wrap(canvas, c, slot - 4, TICK_PX) for c in categories]
    if all(canvas.text_size(line, TICK_PX)[0] <= slot - 4 for lines in wrapped for line in lines):
        return _CategoryLayout("wrapped", wrapped, max(len(w) for w in wrapped) * line_h + 8, left)
    diag = math.sqrt(0.5)
    reach = [w * diag + line_h * diag for w in widths]
    # Slanted labels hang to the left of their tick: widen the left margin if the first ones would be cut.
    needed = max(r - slot * (i + 0.5) for i, r in enumerate(reach)) + PAD
    return _CategoryLayout("slanted", [[c] for c in categories], max(reach) + 10, max(left, needed))


def _wrap(canvas: _Canvas, text: str, max_width: float, px: int) -> list[str]:
    """Split ``text`` at spaces into lines no wider than ``max_width`` (a long word stays whole)."""
    lines: list[str] = []
    for word in text.split():
        if lines and canvas.text_size(lines[-1] + " " + word, px)[0] <= max_width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _draw_end_labels(
    canvas: _Canvas, ends: list[tuple[str, float]], colour_of: dict[str, Colour], x: float, top: float, bottom: float
) -> None:
    """Names at the right of the plot, at their line's last y, pushed apart so none overlap."""
    if not ends:
        return
    gap = canvas.text_size("Hg", TICK_PX)[1] + 1
    order = sorted(range(len(ends)), key=lambda i: ends[i][1])
    ys = [min(max(ends[i][1], top), bottom) for i in order]
    for k in range(1, len(ys)):
        ys[k] = max(ys[k], ys[k - 1] + gap)
    overflow = ys[-1] - max(bottom, top + gap * (len(ys) - 1))
    if overflow > 0:
        ys[-1] -= overflow
        for k in range(len(ys) - 2, -1, -1):
            ys[k] = min(ys[k], ys[k + 1] - gap)
    for k, i in enumerate(order):
        name, _ = ends[i]
        colour = colour_of[name]
        canvas.line([(x, ys[k]), (x + 14, ys[k])], colour, 3)
        canvas.text((x + 18, ys[k]), name, TICK_PX, _readable(colour), anchor="lm")


# --------------------------------------------------------------------------- numbers and colours


def _nice_step(raw: float) -> float:
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 2.5, 5.0, 10.0):
        if mult * magnitude >= raw * (1 - 1e-9):
            return mult * magnitude
    return 10.0 * magnitude


def _step_of(ticks: Sequence[float]) -> float:
    return ticks[1] - ticks[0] if len(ticks) > 1 else 1.0


def _format_tick(value: float, step: float) -> str:
    """Enough decimals to tell ticks ``step`` apart; ``40k`` for round thousands from 10000 on."""
    exponent = math.floor(math.log10(abs(step))) if step else 0
    mantissa = step / 10.0**exponent if step else 1.0
    decimals = max(0, -exponent + (1 if abs(mantissa - 2.5) < 1e-6 else 0))
    if decimals == 0 and abs(value) >= 10000 and round(value) % 1000 == 0:
        return f"{round(value) // 1000}k"
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text


def _log_ticks(lo: float, hi: float) -> tuple[list[float], float, float]:
    """Ticks of a log axis: decades, plus 2x and 5x when it spans at most two decades."""
    first = math.floor(math.log10(lo))
    last = max(math.ceil(math.log10(hi)), first + 1)
    ticks = [10.0**k for k in range(first, last + 1)]
    if last - first <= 2:
        ticks += [m * 10.0**k for k in range(first, last) for m in (2.0, 5.0)]
    return sorted(float(f"{t:.6g}") for t in ticks), 10.0**first, 10.0**last


def _check_size(size: tuple[int, int]) -> None:
    if len(size) != 2 or size[0] < 200 or size[1] < 150:
        raise ValueError(f"chart size must be (width >= 200, height >= 150), got {size}")


def _series_colours(count: int, colours: Sequence[Colour] | None) -> list[Colour]:
    if colours is None:
        return [SERIES_COLOURS[i % len(SERIES_COLOURS)] for i in range(count)]
    if len(colours) < count:
        raise ValueError(f"{len(colours)} colours given for {count} series")
    return [tuple(int(v) for v in c) for c in colours[:count]]  # type: ignore[misc]


def _line_colours(series: dict[str, object], colours: dict[str, Colour] | None) -> dict[str, Colour]:
    """The given colour of each series, else the next colour of the default palette."""
    chosen = colours or {}
    defaults = itertools.cycle(SERIES_COLOURS)
    out: dict[str, Colour] = {}
    for name in series:
        out[name] = tuple(int(v) for v in chosen[name]) if name in chosen else next(defaults)  # type: ignore[assignment]
    return out


def _luminance(colour: Colour) -> float:
    r, g, b = colour
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255.0


def _readable(colour: Colour) -> Colour:
    """``colour`` darkened, if needed, to stand out as text on white."""
    lum = _luminance(colour)
    if lum <= 0.5:
        return colour
    factor = 0.45 / lum
    return tuple(int(v * factor) for v in colour)  # type: ignore[return-value]


def _finite_runs(values: np.ndarray) -> list[slice]:
    """Slices of the maximal runs of finite values."""
    finite = np.isfinite(values).astype(np.int8)
    edges = np.diff(np.concatenate(([0], finite, [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return [slice(int(a), int(b)) for a, b in zip(starts, stops)]


def _fit(cell: np.ndarray, size: tuple[int, int]) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(cell))
    if image.size == size:
        return image
    enlarge = size[0] >= image.width and size[1] >= image.height
    return image.resize(size, Image.NEAREST if enlarge else Image.BOX)
