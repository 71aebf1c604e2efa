"""The report's ``index.html``: the ``report.html`` template filled with escaped values and tables."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from importlib import resources
from string import Template
from typing import Any

import numpy as np

from tufl.demo.report_figures import IOU_CHART, LOSS_CHART, QUALITATIVE_CHART, THRESHOLD_CHART
from tufl.demo.report_inputs import ModelReport, gains

_CAPTIONS = {
    IOU_CHART: "Per-class IoU (%) of each model on the target validation split.",
    QUALITATIVE_CHART: "Target validation images, ground truth and each model's prediction (black: ignored pixels).",
    LOSS_CHART: "Training losses per run against the iteration.",
    THRESHOLD_CHART: "Per-class adaptive TUFL thresholds against the iteration.",
}


def format_percent(fraction: float, decimals: int = 2) -> str:
    """A 0..1 score as a percentage without the sign (``0.4567 -> "45.67"``); ``n/a`` for NaN."""
    return f"{100.0 * fraction:.{decimals}f}" if math.isfinite(fraction) else "n/a"


def format_duration(seconds: float) -> str:
    """``42.3 s``, ``12 min 05 s`` or ``1 h 02 min``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def render_page(
    models: Sequence[ModelReport],
    class_names: Sequence[str],
    palette: np.ndarray,
    settings: dict[str, Any],
    title: str,
    images: Sequence[str],
) -> str:
    """The whole page; ``images`` are the chart files written (the others are left out)."""
    best = max(models, key=lambda m: m.miou if math.isfinite(m.miou) else -math.inf)
    lead = f"Best model: {best.name}, {format_percent(best.miou)} % mIoU on the target validation split"
    if best is not models[0] and math.isfinite(models[0].miou) and math.isfinite(best.miou):
        lead += f" ({100.0 * (best.miou - models[0].miou):+.2f} points over {models[0].name})"
    settings_list = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(_format_setting(str(k), v))}</dd>"
                            for k, v in settings.items())
    curves = "".join(_figure(name) for name in (LOSS_CHART, THRESHOLD_CHART) if name in images)
    template = Template(resources.files("tufl.demo").joinpath("report.html").read_text(encoding="utf-8"))
    return template.substitute(
        title=_esc(title),
        lead=_esc(lead),
        settings=f'<h2>Settings</h2>\n<dl class="settings">{settings_list}</dl>' if settings else "",
        models_table=_comparison_table(models),
        iou_figure=_figure(IOU_CHART) if IOU_CHART in images else "",
        iou_table=_iou_table(models, class_names, palette),
        qualitative=(f"<h2>Qualitative results</h2>\n{_figure(QUALITATIVE_CHART)}"
                     if QUALITATIVE_CHART in images else ""),
        curves=f"<h2>Training curves</h2>\n{curves}" if curves else "",
    )


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _format_setting(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.number)) and key.endswith("seconds"):
        return format_duration(float(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format_setting(str(k), v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_setting(key, v) for v in value)
    return str(value)


def _signed_cell(delta: float | None, decimals: int) -> str:
    if delta is None or not math.isfinite(delta):
        return '<td class="num na">-</td>'
    css = "pos" if delta > 0 else "neg" if delta < 0 else ""
    return f'<td class="num {css}">{100.0 * delta:+.{decimals}f}</td>'


def _table(head: str, rows: Sequence[str]) -> str:
    body = "\n".join(rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _comparison_table(models: Sequence[ModelReport]) -> str:
    rows = []
    for m, gain in zip(models, gains(models)):
        seconds = "-" if m.train_seconds is None else format_duration(m.train_seconds)
        rows.append(
            f'<tr><td>{_esc(m.name)}</td><td class="num">{format_percent(m.miou)}</td>'
            f'{_signed_cell(gain, 2)}<td class="num">{_esc(seconds)}</td></tr>'
        )
    head = ('<th>model</th><th class="num">mIoU (%)</th><th class="num">gain over previous row (points)</th>'
            '<th class="num">training time</th>')
    return _table(head, rows)


def _bold_best(values: Sequence[float], decimals: int) -> str:
    """Number cells of formatted percentages; the highest shown value (ties included) in bold."""
    finite = [round(100.0 * v, decimals) for v in values if math.isfinite(v)]
    best = max(finite, default=None)
    cells = []
    for v in values:
        shown = format_percent(v, decimals)
        if best is not None and math.isfinite(v) and round(100.0 * v, decimals) == best:
            shown = f"<strong>{shown}</strong>"
        cells.append(f'<td class="num">{shown}</td>')
    return "".join(cells)


def _iou_table(models: Sequence[ModelReport], class_names: Sequence[str], palette: np.ndarray) -> str:
    with_delta = len(models) > 1
    head = "<th>class</th>" + "".join(f'<th class="num">{_esc(m.name)}</th>' for m in models)
    if with_delta:
        head += f'<th class="num">{_esc(models[-1].name)} vs {_esc(models[0].name)}</th>'
    rows = []
    for c, name in enumerate(class_names):
        r, g, b = (int(v) for v in palette[c])
        cells = _bold_best([m.iou[c] for m in models], 1)
        if with_delta:
            cells += _signed_cell(models[-1].iou[c] - models[0].iou[c], 1)
        swatch = f'<span class="swatch" style="background: rgb({r}, {g}, {b})"></span>'
        rows.append(f"<tr><td>{swatch}{_esc(name)}</td>{cells}</tr>")
    total = _bold_best([m.miou for m in models], 2)
    if with_delta:
        total += _signed_cell(models[-1].miou - models[0].miou, 2)
    rows.append(f'<tr class="total"><td>mIoU</td>{total}</tr>')
    return _table(head, rows)


def _figure(name: str) -> str:
    caption = _esc(_CAPTIONS[name])
    return (f'<figure><a href="{_esc(name)}"><img src="{_esc(name)}" alt="{caption}"></a>'
            f"<figcaption>{caption}</figcaption></figure>\n")
