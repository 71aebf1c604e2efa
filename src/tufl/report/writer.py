"""A report's files: PNG charts, ``summary.json`` and a self-contained ``index.html``.

The inputs are :mod:`tufl.report.inputs`, the figures are made in
:mod:`tufl.report.figures` and the page in :mod:`tufl.report.page`; this module
checks the inputs and writes the files, the page last.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tufl.report.charts import save_png
from tufl.report.figures import report_figures
from tufl.report.inputs import ModelReport, QualitativeRow, gains
from tufl.report.page import PageText, render_page
from tufl.runtime.atomic import atomic_path, atomic_write_text

__all__ = ["DEFAULT_TITLE", "ModelReport", "PageText", "QualitativeRow", "write_report"]

DEFAULT_TITLE = "tufl report"


def write_report(
    out_dir: str | Path,
    models: list[ModelReport],
    qualitative: list[QualitativeRow],
    class_names: tuple[str, ...],
    palette: np.ndarray,
    settings: dict[str, Any] | None = None,
    title: str = DEFAULT_TITLE,
    text: PageText | None = None,
) -> Path:
    """Write the charts, ``summary.json`` and ``index.html`` into ``out_dir``; return the page's path.

    ``models`` are listed in order (each row's gain is over the row above). ``text``
    gives the page's words (title, settings, what the scores and samples are); without it
    they are ``title``, ``settings`` and the defaults of :class:`PageText`. Charts
    without data are not drawn, and a stale copy of such a chart in ``out_dir`` is
    removed so the folder always matches the page. Every input is checked and every
    figure made before the first file is written; each file is written atomically,
    ``index.html`` last; the same inputs give the same bytes.
    """
    out_dir = Path(out_dir)
    text = text or PageText(title=title, settings=dict(settings or {}))
    _check_inputs(models, qualitative, class_names, palette)
    figures = report_figures(models, qualitative, class_names, palette, text.scores_on)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for name, figure in figures.items():
        target = out_dir / name
        if figure is None:
            target.unlink(missing_ok=True)
            continue
        with atomic_path(target) as tmp:
            save_png(figure, tmp)
        written.append(name)
    summary = _summary(models, class_names, text, written)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    page = out_dir / "index.html"
    atomic_write_text(page, render_page(models, class_names, palette, text, written))
    return page


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
        if m.iou is not None and len(m.iou) != len(class_names):
            raise ValueError(
                f"write_report: model {m.name!r} has {len(m.iou)} IoU values for {len(class_names)} classes"
            )
        for i, record in enumerate(m.metrics):
            if not isinstance(record, dict) or "iter" not in record:
                raise ValueError(f"write_report: model {m.name!r}: metrics record {i} is not a dict with an 'iter'")
    if not (isinstance(palette, np.ndarray) and palette.shape == (256, 3) and palette.dtype == np.uint8):
        raise ValueError("write_report: palette must be a (256, 3) uint8 array")
    for r, row in enumerate(qualitative):
        _check_row(r, row, names, qualitative[0])


def _check_row(r: int, row: QualitativeRow, names: Sequence[str], first: QualitativeRow) -> None:
    where = f"write_report: qualitative row {r}"
    image = row.image
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
        raise ValueError(f"{where}: image must be HxWx3 uint8, got {row.image.dtype} {row.image.shape}")
    shape = row.image.shape[:2]
    unknown = set(row.predictions) - set(names)
    if unknown:
        raise ValueError(f"{where}: predictions for unknown models {sorted(unknown)}")
    if set(row.predictions) != set(first.predictions):
        raise ValueError(f"{where}: predicts models {sorted(row.predictions)}, row 0 {sorted(first.predictions)}")
    if (row.ground_truth is None) != (first.ground_truth is None):
        raise ValueError(f"{where}: has {'no ' if row.ground_truth is None else ''}ground truth, row 0 "
                         f"{'has' if first.ground_truth is not None else 'has none'}")
    maps = [("ground truth", row.ground_truth)] if row.ground_truth is not None else []
    for label, array in [*maps, *row.predictions.items()]:
        if not isinstance(array, np.ndarray) or array.shape != shape or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{where}: {label} must be an integer {shape} label map, "
                             f"got {array.dtype} {array.shape}")
        if array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"{where}: {label} has labels outside 0..255")


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


def _summary(models: Sequence[ModelReport], class_names: Sequence[str], text: PageText,
             images: list[str]) -> dict[str, Any]:
    return _jsonable({
        "title": text.title,
        "class_names": list(class_names),
        "settings": text.settings,
        "scores_on": text.scores_on,
        "models": [
            {
                "name": m.name,
                "miou": None if m.miou is None else float(m.miou),
                "gain_over_previous": gain,
                "iou": None if m.iou is None else [float(v) for v in m.iou],
                "scored_at": m.scored_at,
                "best_miou": m.best_miou,
                "iterations": m.iterations,
                "train_seconds": m.train_seconds,
            }
            for m, gain in zip(models, gains(models))
        ],
        "images": images,
    })
