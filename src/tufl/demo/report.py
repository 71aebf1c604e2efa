"""The demo's visual report: PNG charts, ``summary.json`` and a self-contained ``index.html``."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tufl.atomic import atomic_path, atomic_write_text
from tufl.data.labels import IGNORE_INDEX
from tufl.demo.charts import (
    SERIES_COLOURS,
    class_legend,
    grouped_bar_chart,
    image_grid,
    line_chart,
    stack_vertical,
)

DEFAULT_TITLE = "TUFL demo: synthetic to realistic driving scenes"

IOU_CHART = "miou_per_class.png"
QUALITATIVE_CHART = "qualitative.png"
LOSS_CHART = "loss_curves.png"
THRESHOLD_CHART = "thresholds.png"
CHART_FILES = (IOU_CHART, QUALITATIVE_CHART, LOSS_CHART, THRESHOLD_CHART)

_PREFERRED_LOSS_ORDER = ("loss", "loss_sup", "loss_unsup", "loss_mix")


@dataclass(frozen=True)
class ModelReport:
    """One trained model: its scores on the target validation split and its run's metric records."""

    name: str
    miou: float
    iou: list[float]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float | None = None


@dataclass(frozen=True)
class QualitativeRow:
    """One target image with its ground truth and each model's prediction (train ids, 255 = ignore)."""

    image: np.ndarray
    ground_truth: np.ndarray
    predictions: dict[str, np.ndarray]


def write_report(
    out_dir: str | Path,
    models: list[ModelReport],
    qualitative: list[QualitativeRow],
    class_names: tuple[str, ...],
    palette: np.ndarray,
    settings: dict[str, Any],
    title: str = DEFAULT_TITLE,
) -> Path:
    """Write the charts, ``summary.json`` and ``index.html`` into ``out_dir``; return the page's path.

    ``models`` are listed in order (each row's gain is over the row above).
    Charts without data (no qualitative rows, no loss or threshold records) are
    not drawn, and a stale copy of such a chart in ``out_dir`` is removed so the
    folder always matches the page. Every file is written atomically.
    """
    out_dir = Path(out_dir)
    _check_inputs(models, qualitative, class_names, palette)
    charts: dict[str, Image.Image | None] = {
        IOU_CHART: _iou_chart(models, class_names),
        QUALITATIVE_CHART: _qualitative_figure(qualitative, models, class_names, palette) if qualitative else None,
        LOSS_CHART: _loss_figure(models),
        THRESHOLD_CHART: _threshold_figure(models, class_names, palette),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for name, image in charts.items():
        target = out_dir / name
        if image is None:
            target.unlink(missing_ok=True)
            continue
        with atomic_path(target) as tmp:
            image.save(tmp, format="PNG", optimize=True)
        written.append(name)
    summary = _summary(models, class_names, settings, title, written)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    page = out_dir / "index.html"
    atomic_write_text(page, _html_page(models, class_names, palette, settings, title, written))
    return page


# --------------------------------------------------------------------------- validation


def _check_inputs(
    models: Sequence[ModelReport],
    qualitative: Sequence[QualitativeRow],
    class_names: Sequence[str],
    palette: np.ndarray,
) -> None:
    if not models:
        raise ValueError("write_report: no models to report")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"write_report: model names must be unique, got {names}")
    for m in models:
        if len(m.iou) != len(class_names):
            raise ValueError(
                f"write_report: model {m.name!r} has {len(m.iou)} IoU values for {len(class_names)} classes"
            )
        for i, record in enumerate(m.metrics):
            if not isinstance(record, dict) or "iter" not in record:
                raise ValueError(f"write_report: model {m.name!r}: metrics record {i} is not a dict with an 'iter'")
    if not (isinstance(palette, np.ndarray) and palette.shape == (256, 3) and palette.dtype == np.uint8):
        raise ValueError("write_report: palette must be a (256, 3) uint8 array")
    for r, row in enumerate(qualitative):
        where = f"write_report: qualitative row {r}"
        if not (isinstance(row.image, np.ndarray) and row.image.ndim == 3 and row.image.shape[2] == 3 and row.image.dtype == np.uint8):
            raise ValueError(f"{where}: image must be HxWx3 uint8, got {row.image.dtype} {row.image.shape}")
        shape = row.image.shape[:2]
        unknown = set(row.predictions) - set(names)
        if unknown:
            raise ValueError(f"{where}: predictions for unknown models {sorted(unknown)}")
        if set(row.predictions) != set(qualitative[0].predictions):
            raise ValueError(f"{where}: predicts models {sorted(row.predictions)}, row 0 {sorted(qualitative[0].predictions)}")
        for label, array in [("ground truth", row.ground_truth), *row.predictions.items()]:
            if not isinstance(array, np.ndarray) or array.shape != shape or not np.issubdtype(array.dtype, np.integer):
                raise ValueError(f"{where}: {label} must be an integer {shape} label map, got {array.dtype} {array.shape}")
            if array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
                raise ValueError(f"{where}: {label} has labels outside 0..255")


# --------------------------------------------------------------------------- charts


def _iou_chart(models: Sequence[ModelReport], class_names: Sequence[str]) -> Image.Image:
    width = min(1400, max(800, 150 + 55 * len(class_names)))
    return grouped_bar_chart(
        list(class_names),
        {m.name: [100.0 * v for v in m.iou] for m in models},
        "Per-class IoU on the target validation split",
        "IoU (%)",
        y_max=100.0,
        size=(width, 520),
    )


def colourize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``HxW`` train ids -> ``HxWx3`` uint8 colours; the ignore label is black."""
    table = palette.copy()
    table[IGNORE_INDEX] = 0
    return table[labels.astype(np.intp, copy=False)]


def _qualitative_figure(
    rows: Sequence[QualitativeRow], models: Sequence[ModelReport], class_names: Sequence[str], palette: np.ndarray
) -> Image.Image:
    shown = [m.name for m in models if m.name in rows[0].predictions]
    cells = [
        [row.image, colourize(row.ground_truth, palette), *(colourize(row.predictions[n], palette) for n in shown)]
        for row in rows
    ]
    height, width = rows[0].image.shape[:2]
    grid = image_grid(cells, ["image", "ground truth", *shown], cell_size=_display_size(width, height))
    legend = class_legend(list(class_names), [tuple(int(v) for v in palette[i]) for i in range(len(class_names))], grid.width)
    return stack_vertical([grid, legend], gap=0)


def _display_size(width: int, height: int) -> tuple[int, int]:
    """Cell size for the grid: small images enlarged by a whole factor, large ones shrunk to 360 px wide."""
    if width < 200:
        factor = min(4, math.ceil(200 / width))
        return width * factor, height * factor
    if width > 360:
        return 360, max(1, round(height * 360 / width))
    return width, height


def _train_records(model: ModelReport) -> list[dict[str, Any]]:
    return sorted((r for r in model.metrics if r.get("kind") == "train"), key=lambda r: r["iter"])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _loss_terms(records: Sequence[dict[str, Any]]) -> list[str]:
    """Numeric ``loss*`` keys of the records: the known terms in their usual order, then the rest sorted."""
    found = {k for r in records for k, v in r.items() if k.startswith("loss") and _is_number(v)}
    preferred = [k for k in _PREFERRED_LOSS_ORDER if k in found]
    return preferred + sorted(found - set(preferred))


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Centred mean over ``window`` points, over fewer at the ends (a NaN spreads over its window)."""
    v = np.asarray(values, dtype=np.float64)
    if window <= 1 or v.size == 0:
        return v
    kernel = np.ones(window)
    return np.convolve(v, kernel, mode="same") / np.convolve(np.ones_like(v), kernel, mode="same")


def _loss_figure(models: Sequence[ModelReport]) -> Image.Image | None:
    runs = [(m, _train_records(m)) for m in models]
    runs = [(m, records) for m, records in runs if _loss_terms(records)]
    if not runs:
        return None
    # One colour per loss term across all panels.
    all_terms = _loss_terms([r for _, records in runs for r in records])
    colours = {t: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, t in enumerate(all_terms)}
    panels = []
    for model, records in runs:
        terms = _loss_terms(records)
        window = max(1, len(records) // 40)
        series = {}
        for term in terms:
            points = [(r["iter"], r[term]) for r in records if _is_number(r.get(term))]
            xs = [p[0] for p in points]
            series[term] = (xs, moving_average([p[1] for p in points], window).tolist())
        series = _without_redundant_total(series)
        positive = [y for _, ys in series.values() for y in ys if math.isfinite(y) and y > 0]
        log_y = bool(positive) and max(positive) / min(positive) > 30
        smoothing = f", moving average of {window} logs" if window > 1 else ""
        panels.append(line_chart(
            series, f"{model.name}: training losses{smoothing}", "iteration",
            "loss (log scale)" if log_y else "loss", size=(1000, 320), log_y=log_y, colours=colours,
        ))
    return stack_vertical(panels, gap=10)


def _without_redundant_total(
    series: dict[str, tuple[list[float], list[float]]],
) -> dict[str, tuple[list[float], list[float]]]:
    """Drop the total ``loss`` when it equals another term (a run with a single loss term)."""
    if "loss" not in series:
        return series
    xs, ys = series["loss"]
    for term, (other_xs, other_ys) in series.items():
        if term != "loss" and other_xs == xs and np.allclose(other_ys, ys, equal_nan=True):
            return {k: v for k, v in series.items() if k != "loss"}
    return series


def _threshold_figure(models: Sequence[ModelReport], class_names: Sequence[str], palette: np.ndarray) -> Image.Image | None:
    panels = []
    for model in models:
        records = [r for r in _train_records(model) if r.get("thresholds")]
        if not records:
            continue
        per_class: dict[int, tuple[list[float], list[float]]] = {}
        for r in records:
            if not isinstance(r["thresholds"], dict):
                raise ValueError(f"write_report: model {model.name!r}, iteration {r['iter']}: 'thresholds' is not a dict")
            for key, value in r["thresholds"].items():
                index = _class_index(key, len(class_names), model.name, r["iter"])
                xs, ys = per_class.setdefault(index, ([], []))
                xs.append(r["iter"])
                ys.append(float(value) if _is_number(value) else math.nan)
        series = {class_names[i]: per_class[i] for i in sorted(per_class)}
        colours = {class_names[i]: tuple(int(v) for v in palette[i]) for i in per_class}
        panels.append(line_chart(
            series, f"{model.name}: per-class TUFL thresholds", "iteration", "threshold",
            size=(1000, 460), colours=colours, end_labels=True,
        ))
    return stack_vertical(panels, gap=10) if panels else None


def _class_index(key: Any, num_classes: int, model: str, iteration: Any) -> int:
    try:
        index = int(key)
    except (TypeError, ValueError):
        index = -1
    if not 0 <= index < num_classes:
        raise ValueError(
            f"write_report: model {model!r}, iteration {iteration}: threshold key {key!r} is not a class index"
            f" in 0..{num_classes - 1}"
        )
    return index


# --------------------------------------------------------------------------- numbers


def _gains(models: Sequence[ModelReport]) -> list[float | None]:
    return [None] + [b.miou - a.miou for a, b in zip(models, models[1:])]


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


def _jsonable(value: Any) -> Any:
    """Plain JSON values: NaN/inf -> null, tuples -> lists, numpy scalars and paths -> Python values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _summary(
    models: Sequence[ModelReport], class_names: Sequence[str], settings: dict[str, Any], title: str, images: list[str]
) -> dict[str, Any]:
    return _jsonable({
        "title": title,
        "class_names": list(class_names),
        "settings": settings,
        "models": [
            {
                "name": m.name,
                "miou": float(m.miou),
                "gain_over_previous": gain,
                "iou": [float(v) for v in m.iou],
                "train_seconds": m.train_seconds,
            }
            for m, gain in zip(models, _gains(models))
        ],
        "images": images,
    })


# --------------------------------------------------------------------------- HTML

_CSS = """
body { margin: 0; background: #f3f4f6; color: #1f2328;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 36px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #d8dee4; }
.lead { color: #57606a; margin: 0 0 8px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 12px; border-bottom: 1px solid #e6e8eb; text-align: left; }
th { background: #f6f8fa; font-weight: 600; }
td.num, th.num { text-align: right; }
tbody tr:hover { background: #f9fafb; }
tr.total td { border-top: 2px solid #d0d7de; font-weight: 600; }
.pos { color: #1a7f37; } .neg { color: #c0392b; } .na { color: #8c959f; }
.settings { display: grid; grid-template-columns: max-content 1fr; gap: 2px 18px; margin: 0; }
.settings dt { color: #57606a; } .settings dd { margin: 0; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 8px; vertical-align: -1px;
          border: 1px solid #8c959f; }
figure { margin: 14px 0 24px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e6e8eb; }
figcaption { color: #57606a; font-size: 13px; margin-top: 4px; }
"""


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


def _comparison_table(models: Sequence[ModelReport]) -> str:
    rows = []
    for m, gain in zip(models, _gains(models)):
        seconds = "-" if m.train_seconds is None else format_duration(m.train_seconds)
        rows.append(
            f"<tr><td>{_esc(m.name)}</td><td class=\"num\">{format_percent(m.miou)}</td>"
            f"{_signed_cell(gain, 2)}<td class=\"num\">{_esc(seconds)}</td></tr>"
        )
    return (
        "<table><thead><tr><th>model</th><th class=\"num\">mIoU (%)</th>"
        "<th class=\"num\">gain over previous row (points)</th><th class=\"num\">training time</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _bold_best(values: Sequence[float], decimals: int) -> list[str]:
    """Formatted percentages; the highest shown value (ties included) in bold."""
    shown = [format_percent(v, decimals) for v in values]
    finite = [round(100.0 * v, decimals) for v in values if math.isfinite(v)]
    best = max(finite, default=None)
    return [
        f"<strong>{s}</strong>" if best is not None and math.isfinite(v) and round(100.0 * v, decimals) == best else s
        for s, v in zip(shown, values)
    ]


def _iou_table(models: Sequence[ModelReport], class_names: Sequence[str], palette: np.ndarray) -> str:
    with_delta = len(models) > 1
    head = "".join(f'<th class="num">{_esc(m.name)}</th>' for m in models)
    if with_delta:
        head += f'<th class="num">{_esc(models[-1].name)} vs {_esc(models[0].name)}</th>'
    rows = []
    for c, name in enumerate(class_names):
        r, g, b = (int(v) for v in palette[c])
        cells = "".join(f'<td class="num">{s}</td>' for s in _bold_best([m.iou[c] for m in models], 1))
        if with_delta:
            cells += _signed_cell(models[-1].iou[c] - models[0].iou[c], 1)
        rows.append(
            f'<tr><td><span class="swatch" style="background: rgb({r}, {g}, {b})"></span>{_esc(name)}</td>{cells}</tr>'
        )
    total = "".join(f'<td class="num">{s}</td>' for s in _bold_best([m.miou for m in models], 2))
    if with_delta:
        total += _signed_cell(models[-1].miou - models[0].miou, 2)
    rows.append(f'<tr class="total"><td>mIoU</td>{total}</tr>')
    return (
        f"<table><thead><tr><th>class</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        '<p class="lead">IoU in %; the best value per class in bold.</p>'
    )


def _figure(name: str, caption: str) -> str:
    return (
        f'<figure><a href="{_esc(name)}"><img src="{_esc(name)}" alt="{_esc(caption)}"></a>'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _html_page(
    models: Sequence[ModelReport],
    class_names: Sequence[str],
    palette: np.ndarray,
    settings: dict[str, Any],
    title: str,
    images: Sequence[str],
) -> str:
    settings_html = "".join(
        f"<dt>{_esc(k)}</dt><dd>{_esc(_format_setting(str(k), v))}</dd>" for k, v in settings.items()
    )
    best = max(models, key=lambda m: m.miou if math.isfinite(m.miou) else -math.inf)
    lead = f"Best model: {best.name}, {format_percent(best.miou)} % mIoU on the target validation split"
    if best is not models[0] and math.isfinite(models[0].miou) and math.isfinite(best.miou):
        lead += f" ({100.0 * (best.miou - models[0].miou):+.2f} points over {models[0].name})"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_esc(title)}</h1><p class=\"lead\">{_esc(lead)}.</p>",
        f"<h2>Settings</h2><dl class=\"settings\">{settings_html}</dl>" if settings else "",
        f"<h2>Models</h2>{_comparison_table(models)}",
        "<h2>Per-class IoU</h2>",
        _figure(IOU_CHART, "Per-class IoU (%) of each model on the target validation split.") if IOU_CHART in images else "",
        _iou_table(models, class_names, palette),
    ]
    if QUALITATIVE_CHART in images:
        parts += [
            "<h2>Qualitative results</h2>",
            _figure(QUALITATIVE_CHART, "Target validation images, ground truth and each model's prediction "
                    "(black: ignored pixels)."),
        ]
    curves = [(LOSS_CHART, "Training losses per run against the iteration."),
              (THRESHOLD_CHART, "Per-class adaptive TUFL thresholds against the iteration.")]
    if any(name in images for name, _ in curves):
        parts.append("<h2>Training curves</h2>")
        parts += [_figure(name, caption) for name, caption in curves if name in images]
    parts.append("</main></body></html>\n")
    return "\n".join(p for p in parts if p)
