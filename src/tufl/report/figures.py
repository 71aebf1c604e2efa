"""The report's figures, made from the runs' scores, metric records and sample predictions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tufl.data.labels import IGNORE_INDEX
from tufl.report.charts import SERIES_COLOURS, Colour, LinePanel, bar_chart, image_grid, line_panels
from tufl.report.inputs import ModelReport, QualitativeRow, scored

IOU_CHART = "miou_per_class.png"
QUALITATIVE_CHART = "qualitative.png"
LOSS_CHART = "loss_curves.png"
THRESHOLD_CHART = "thresholds.png"
MIOU_CHART = "miou_curves.png"

_PREFERRED_LOSS_ORDER = ("loss", "loss_sup", "loss_unsup", "loss_mix", "loss_mic")
# Above this many classes the sample legend lists only the classes shown.
_FULL_LEGEND_CLASSES = 30


def report_figures(
    models: Sequence[ModelReport],
    qualitative: Sequence[QualitativeRow],
    class_names: Sequence[str],
    palette: np.ndarray,
    scores_on: str = "the validation split",
) -> dict[str, Figure | None]:
    """Every figure of the report by file name; None where there is nothing to draw."""
    return {
        IOU_CHART: iou_figure(models, class_names, scores_on),
        QUALITATIVE_CHART: qualitative_figure(qualitative, models, class_names, palette) if qualitative else None,
        MIOU_CHART: miou_figure(models),
        LOSS_CHART: loss_figure(models),
        THRESHOLD_CHART: threshold_figure(models, class_names, palette),
    }


def iou_figure(models: Sequence[ModelReport], class_names: Sequence[str],
               scores_on: str = "the validation split") -> Figure | None:
    """Per-class IoU bars (in %) of every scored model; a class absent from the split has no
    bar and is labelled "absent". None when no model has scores."""
    shown = scored(models)
    if not shown:
        return None
    return bar_chart(
        list(class_names),
        {m.name: [100.0 * v for v in m.iou or ()] for m in shown},
        f"Per-class IoU on {scores_on}",
        "IoU (%)",
        y_max=100.0,
        size=(min(1400, max(800, 150 + 55 * len(class_names))), 520),
        nan_label="absent",
    )


def colourize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``HxW`` train ids -> ``HxWx3`` uint8 colours; the ignore label is black."""
    table = palette.copy()
    table[IGNORE_INDEX] = 0
    return table[labels.astype(np.intp, copy=False)]


def _class_colour(palette: np.ndarray, index: int) -> Colour:
    r, g, b = (int(v) for v in palette[index])
    return r, g, b


def qualitative_figure(
    rows: Sequence[QualitativeRow], models: Sequence[ModelReport], class_names: Sequence[str], palette: np.ndarray
) -> Figure:
    """Image, ground truth (where the rows have it) and each model's prediction per row,
    with the class colours under them."""
    shown = [m.name for m in models if m.name in rows[0].predictions]
    labelled = rows[0].ground_truth is not None
    cells = []
    for row in rows:
        maps = [row.ground_truth] if labelled else []
        maps += [row.predictions[n] for n in shown]
        cells.append([row.image, *(colourize(m, palette) for m in maps if m is not None)])
    height, width = rows[0].image.shape[:2]
    if len(class_names) > _FULL_LEGEND_CLASSES:
        seen = set()
        for row in rows:
            for labels in [row.ground_truth, *row.predictions.values()]:
                if labels is not None:
                    seen.update(int(v) for v in np.unique(labels))
        listed = [i for i in range(len(class_names)) if i in seen]
    else:
        listed = list(range(len(class_names)))
    legend = {class_names[i]: _class_colour(palette, i) for i in listed}
    titles = ["image", *(["ground truth"] if labelled else []), *shown]
    return image_grid(cells, titles, cell_size=display_size(width, height), legend=legend)


def display_size(width: int, height: int) -> tuple[int, int]:
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


def miou_figure(models: Sequence[ModelReport]) -> Figure | None:
    """Validation mIoU (%) against the iteration, one line per run that validated; None
    when no run has a ``val`` record."""
    series = {}
    for model in models:
        records = sorted((r for r in model.metrics if r.get("kind") == "val" and _is_number(r.get("miou"))),
                         key=lambda r: r["iter"])
        if records:
            series[model.name] = ([r["iter"] for r in records], [100.0 * r["miou"] for r in records])
    if not series:
        return None
    return line_panels([LinePanel("Validation mIoU", series, "iteration", "mIoU (%)", integer_x=True)], panel_height=360)


def loss_figure(models: Sequence[ModelReport]) -> Figure | None:
    """One panel of smoothed training losses per model that logged any; one colour per term throughout."""
    runs = [(m, _train_records(m)) for m in models]
    runs = [(m, records) for m, records in runs if _loss_terms(records)]
    if not runs:
        return None
    all_terms = _loss_terms([r for _, records in runs for r in records])
    colours = {t: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, t in enumerate(all_terms)}
    panels = []
    for model, records in runs:
        window = max(1, len(records) // 40)
        series = {}
        for term in _loss_terms(records):
            points = [(r["iter"], r[term]) for r in records if _is_number(r.get(term))]
            series[term] = ([p[0] for p in points], moving_average([p[1] for p in points], window).tolist())
        series = _without_redundant_total(series)
        positive = [y for _, ys in series.values() for y in ys if math.isfinite(y) and y > 0]
        log_y = bool(positive) and max(positive) / min(positive) > 30
        smoothing = f", moving average of {window} logs" if window > 1 else ""
        panels.append(LinePanel(f"{model.name}: training losses{smoothing}", series, "iteration",
                                "loss (log scale)" if log_y else "loss", log_y=log_y, colours=colours,
                                integer_x=True))
    return line_panels(panels, panel_height=320)


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


def threshold_figure(models: Sequence[ModelReport], class_names: Sequence[str], palette: np.ndarray) -> Figure | None:
    """One panel of per-class TUFL thresholds per model that logged them, lines in the class colours."""
    panels = []
    for model in models:
        records = [r for r in _train_records(model) if r.get("thresholds")]
        if not records:
            continue
        per_class: dict[int, tuple[list[float], list[float]]] = {}
        for r in records:
            if not isinstance(r["thresholds"], dict):
                raise ValueError(f"write_report: model {model.name!r}, iteration {r['iter']}: "
                                 "'thresholds' is not a dict")
            for key, value in r["thresholds"].items():
                index = _class_index(key, len(class_names), model.name, r["iter"])
                xs, ys = per_class.setdefault(index, ([], []))
                xs.append(r["iter"])
                ys.append(float(value) if _is_number(value) else math.nan)
        series = {class_names[i]: per_class[i] for i in sorted(per_class)}
        colours = {class_names[i]: _class_colour(palette, i) for i in per_class}
        panels.append(LinePanel(f"{model.name}: per-class TUFL thresholds", series, "iteration", "threshold",
                                colours=colours, integer_x=True))
    return line_panels(panels, panel_height=460) if panels else None


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
