"""An SVG bar chart with error bars (one bar per ablation row), written as text: no drawing
library, the same data give the same bytes, and the page embeds it as it is.

Bars are means, whiskers ± one sample standard deviation; a row without a value (its
runs failed) shows "failed" in place of its bar. Negative values (differences to a
baseline) hang below the zero line.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tufl.report.charts import SERIES_COLOURS

TOP, BOTTOM, LEFT, RIGHT = 44, 96, 64, 16
SLOT = 72
MIN_WIDTH = 360
HEIGHT = 380


@dataclass(frozen=True)
class Bar:
    """One bar: its label, mean and standard deviation (None: undefined), and a text for a
    missing mean (e.g. "failed")."""

    label: str
    mean: float | None
    std: float | None = None
    missing: str = "failed"
    highlight: bool = False


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if not hi > lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(value, 10))
    return ticks


def _range(bars: Sequence[Bar]) -> tuple[float, float]:
    ends = [0.0]
    for bar in bars:
        if bar.mean is not None:
            std = bar.std or 0.0
            ends += [bar.mean - std, bar.mean + std]
    return min(ends), max(ends)


def _text(x: float, y: float, text: str, size: int = 12, anchor: str = "middle", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="#222"{extra}>'
            f"{html.escape(text)}</text>")


def _colour(highlight: bool) -> str:
    r, g, b = SERIES_COLOURS[1 if highlight else 0]
    return f"#{r:02x}{g:02x}{b:02x}"


def _bar(bar: Bar, x: float, y_of: Callable[[float], float], zero: float) -> list[str]:
    """The bar, its whisker and its value label."""
    if bar.mean is None:
        return [_text(x, zero - 6, bar.missing, 11, extra=' fill-opacity="0.7"')]
    top, bottom = sorted((y_of(bar.mean), zero))
    parts = [f'<rect x="{x - SLOT * 0.3:.1f}" y="{top:.1f}" width="{SLOT * 0.6:.1f}" '
             f'height="{max(bottom - top, 0.5):.1f}" fill="{_colour(bar.highlight)}"/>']
    label_y = top - 6
    if bar.std is not None:
        hi, lo = y_of(bar.mean + bar.std), y_of(bar.mean - bar.std)
        parts += [f'<line x1="{x:.1f}" y1="{hi:.1f}" x2="{x:.1f}" y2="{lo:.1f}" stroke="#222" stroke-width="1.5"/>',
                  f'<line x1="{x - 8:.1f}" y1="{hi:.1f}" x2="{x + 8:.1f}" y2="{hi:.1f}" stroke="#222"/>',
                  f'<line x1="{x - 8:.1f}" y1="{lo:.1f}" x2="{x + 8:.1f}" y2="{lo:.1f}" stroke="#222"/>']
        label_y = min(label_y, hi - 6)
    std = "" if bar.std is None else f" ± {bar.std:.2f}"
    parts.append(_text(x, label_y, f"{bar.mean:.2f}{std}", 10))
    return parts


def bar_chart_svg(bars: Sequence[Bar], title: str, y_label: str) -> str:
    """The chart as an SVG document."""
    if not bars:
        raise ValueError("bar_chart_svg: no bars")
    width = max(LEFT + RIGHT + SLOT * len(bars), 8 * len(title) + 40, MIN_WIDTH)
    ticks = nice_ticks(*_range(bars))
    lo, hi = ticks[0], ticks[-1]
    plot = HEIGHT - TOP - BOTTOM

    def y_of(value: float) -> float:
        return TOP + (hi - value) / (hi - lo) * plot

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" '
             f'viewBox="0 0 {width} {HEIGHT}" font-family="system-ui, sans-serif">',
             f'<rect width="{width}" height="{HEIGHT}" fill="white"/>',
             _text(width / 2, 22, title, 14, extra=' font-weight="bold"'),
             _text(16, TOP + plot / 2, y_label, 12, extra=f' transform="rotate(-90 16 {TOP + plot / 2:.1f})"')]
    for tick in ticks:
        y = y_of(tick)
        parts += [f'<line x1="{LEFT}" y1="{y:.1f}" x2="{width - RIGHT}" y2="{y:.1f}" stroke="#e2e2e2"/>',
                  _text(LEFT - 6, y + 4, f"{tick:g}", 10, anchor="end")]
    zero = y_of(0.0)
    parts.append(f'<line x1="{LEFT}" y1="{zero:.1f}" x2="{width - RIGHT}" y2="{zero:.1f}" stroke="#555"/>')
    slot = (width - LEFT - RIGHT) / len(bars)
    for i, bar in enumerate(bars):
        x = LEFT + slot * (i + 0.5)
        parts += _bar(bar, x, y_of, zero)
        label_y = TOP + plot + 14
        parts.append(_text(x, label_y, bar.label, 11, anchor="end",
                           extra=f' transform="rotate(-35 {x:.1f} {label_y:.1f})"'))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
