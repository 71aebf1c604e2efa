"""The report's ``index.html``: the ``report.html`` template filled with escaped values and tables."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from string import Template
from typing import Any

import numpy as np

from tufl.report.figures import IOU_CHART, LOSS_CHART, MIOU_CHART, QUALITATIVE_CHART, THRESHOLD_CHART
from tufl.report.inputs import ModelReport, gains, scored

_CAPTIONS = {
    MIOU_CHART: "Validation mIoU of each run against the iteration (its val records).",
    LOSS_CHART: "Training losses per run against the iteration.",
    THRESHOLD_CHART: "Per-class adaptive TUFL thresholds against the iteration.",
}
NO_SCORES = "no validation record"


@dataclass(frozen=True)
class PageText:
    """The words of a page that depend on where its numbers and images come from."""

    title: str
    settings: dict[str, Any] = field(default_factory=dict)
    # What the scores were measured on, e.g. "the target validation split".
    scores_on: str = "the validation split"
    # The caption of the sample predictions.
    samples: str = "Sample images, ground truth and each run's prediction (black: ignored pixels)."


def format_percent(fraction: float | None, decimals: int = 2) -> str:
    """A 0..1 score as a percentage without the sign (``0.4567 -> "45.67"``); ``n/a`` for NaN or None."""
    return f"{100.0 * fraction:.{decimals}f}" if fraction is not None and math.isfinite(fraction) else "n/a"


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
    text: PageText,
    images: Sequence[str],
) -> str:
    """The whole page; ``images`` are the chart files written (the others are left out)."""
    settings_list = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(_format_setting(str(k), v))}</dd>"
                            for k, v in text.settings.items())
    curves = "".join(_figure(name, _CAPTIONS[name]) for name in (MIOU_CHART, LOSS_CHART, THRESHOLD_CHART)
                     if name in images)
    template = Template(resources.files("tufl.report").joinpath("report.html").read_text(encoding="utf-8"))
    return template.substitute(
        title=_esc(text.title),
        lead=_esc(_lead(models, text.scores_on)),
        settings=f'<h2>Settings</h2>\n<dl class="settings">{settings_list}</dl>' if text.settings else "",
        runs_table=_runs_table(models),
        iou_section=_iou_section(models, class_names, palette, text.scores_on, images),
        qualitative=(f"<h2>Sample predictions</h2>\n{_figure(QUALITATIVE_CHART, text.samples)}"
                     if QUALITATIVE_CHART in images else ""),
        curves=f"<h2>Training curves</h2>\n{curves}" if curves else "",
    )


def _lead(models: Sequence[ModelReport], scores_on: str) -> str:
    shown = [m for m in scored(models) if math.isfinite(m.miou or math.nan)]
    if not shown:
        return f"{len(models)} run{'s' if len(models) != 1 else ''}; none has a validation record"
    best = max(shown, key=lambda m: m.miou or 0.0)
    lead = f"Best: {best.name}, {format_percent(best.miou)} % mIoU on {scores_on}"
    first = shown[0]
    if best is not first:
        lead += f" ({100.0 * ((best.miou or 0.0) - (first.miou or 0.0)):+.2f} points over {first.name})"
    return lead


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


def _table(table_id: str, head: str, rows: Sequence[str]) -> str:
    body = "\n".join(rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def _runs_table(models: Sequence[ModelReport]) -> str:
    """Each run's iterations, mIoU, gain over the row above and training time; the iteration
    of the scores and the best validation mIoU where any run has them."""
    at = any(m.scored_at is not None for m in models)
    best = any(m.best_miou is not None for m in models)
    rows = []
    for m, gain in zip(models, gains(models)):
        iterations = "-" if m.iterations is None else str(m.iterations)
        score = (f'<td class="num">{format_percent(m.miou)}</td>' if m.scored
                 else f'<td class="num na">{NO_SCORES}</td>')
        seconds = "-" if m.train_seconds is None else format_duration(m.train_seconds)
        row = f'<tr><td>{_esc(m.name)}</td><td class="num">{iterations}</td>{score}{_signed_cell(gain, 2)}'
        if at:
            row += f'<td class="num">{"-" if m.scored_at is None else m.scored_at}</td>'
        if best:
            row += f'<td class="num">{format_percent(m.best_miou) if m.best_miou is not None else "-"}</td>'
        rows.append(f'{row}<td class="num">{_esc(seconds)}</td></tr>')
    head = ('<th>run</th><th class="num">iterations</th><th class="num">mIoU (%)</th>'
            '<th class="num">gain over previous row (points)</th>'
            + ('<th class="num">scored at iteration</th>' if at else "")
            + ('<th class="num">best val mIoU (%)</th>' if best else "")
            + '<th class="num">training time</th>')
    return _table("runs", head, rows)


def _bold_best(values: Sequence[float], decimals: int) -> str:
    """Number cells of formatted percentages; the highest shown value (ties included) in bold
    where there is something to compare (two values or more, one above 0); NaN (a class
    absent from the split) as "absent"."""
    finite = [round(100.0 * v, decimals) for v in values if math.isfinite(v)]
    best = max(finite) if len(finite) > 1 and max(finite) > 0 else None
    cells = []
    for v in values:
        if not math.isfinite(v):
            cells.append('<td class="num na">absent</td>')
            continue
        shown = format_percent(v, decimals)
        if best is not None and round(100.0 * v, decimals) == best:
            shown = f"<strong>{shown}</strong>"
        cells.append(f'<td class="num">{shown}</td>')
    return "".join(cells)


def _iou_section(models: Sequence[ModelReport], class_names: Sequence[str], palette: np.ndarray,
                 scores_on: str, images: Sequence[str]) -> str:
    """The per-class chart and table of the scored runs, and which runs are not in them."""
    shown = scored(models)
    missing = [m.name for m in models if not m.scored]
    note = (f'<p class="lead">Not in the table: {_esc(", ".join(missing))} ({NO_SCORES} in metrics.jsonl).</p>'
            if missing else "")
    if not shown:
        return f'<p class="lead">No run has scores: nothing to compare per class.</p>\n{note}'
    figure = _figure(IOU_CHART, f"Per-class IoU (%) of each run on {scores_on}.") if IOU_CHART in images else ""
    legend = ('<p class="lead">IoU in %; the best value per class in bold; absent: the class has no pixels '
              "in the split.</p>")
    return f"{figure}{_iou_table(shown, class_names, palette)}\n{legend}\n{note}"


def _iou_table(models: Sequence[ModelReport], class_names: Sequence[str], palette: np.ndarray) -> str:
    with_delta = len(models) > 1
    head = "<th>class</th>" + "".join(f'<th class="num">{_esc(m.name)}</th>' for m in models)
    if with_delta:
        head += f'<th class="num">{_esc(models[-1].name)} vs {_esc(models[0].name)}</th>'
    rows = []
    for c, name in enumerate(class_names):
        r, g, b = (int(v) for v in palette[c])
        values = [(m.iou or [])[c] for m in models]
        cells = _bold_best(values, 1)
        if with_delta:
            cells += _signed_cell(values[-1] - values[0], 1)
        swatch = f'<span class="swatch" style="background: rgb({r}, {g}, {b})"></span>'
        rows.append(f"<tr><td>{swatch}{_esc(name)}</td>{cells}</tr>")
    mious = [math.nan if m.miou is None else m.miou for m in models]
    total = _bold_best(mious, 2)
    if with_delta:
        total += _signed_cell(mious[-1] - mious[0], 2)
    rows.append(f'<tr class="total"><td>mIoU</td>{total}</tr>')
    return _table("per-class-iou", head, rows)


def _figure(name: str, caption: str) -> str:
    caption = _esc(caption)
    return (f'<figure><a href="{_esc(name)}"><img src="{_esc(name)}" alt="{caption}"></a>'
            f"<figcaption>{caption}</figcaption></figure>\n")
