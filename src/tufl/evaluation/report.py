"""Human- and machine-readable reports of an :class:`EvalResult`."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from pathlib import Path

from tufl.runtime.atomic import atomic_write_json, atomic_write_text
from tufl.evaluation.metrics import EvalResult

Scalar = str | int | float | bool | None


def format_table(result: EvalResult, title: str | None = None) -> str:
    """Per-class IoU and the mean scores as an aligned text table (IoU in %)."""
    width = max(len("pixel accuracy"), *(len(n) for n in result.class_names), *(len(k) for k in result.scores()))
    lines = [title] if title else []
    rule = "-" * (width + 10)
    lines += [f"{'class':<{width}}  {'IoU (%)':>8}", rule]
    lines += [f"{name:<{width}}  {_class_cell(result, i):>8}" for i, name in enumerate(result.class_names)]
    lines.append(rule)
    lines += [f"{name:<{width}}  {_percent(v):>8}" for name, v in result.scores().items()]
    if result.absent_classes:
        rule = ("scored 0 where predicted, as cityscapesscripts" if result.absent_scored
                else "left out of the means")
        lines.append(f"absent: {len(result.absent_classes)} classes without ground-truth pixels "
                     f"({rule}): {', '.join(result.absent_classes)}")
    return "\n".join(lines)


def write_csv(
    result: EvalResult,
    path: str | os.PathLike[str],
    metadata: Mapping[str, Scalar] | None = None,
) -> Path:
    """Write ``field,value`` rows: metadata, the mean scores, then ``iou/<class>``.

    Scores are fractions in [0, 1]; a class absent from the ground truth is written as
    ``absent``, another undefined score as ``nan``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["field", "value"])
    for key, value in (metadata or {}).items():
        writer.writerow([key, "" if value is None else value])
    writer.writerow(["num_images", result.num_images])
    writer.writerow(["miou", _fraction(result.miou)])
    if result.miou_13 is not None:
        writer.writerow(["miou_13", _fraction(result.miou_13)])
    writer.writerow(["pixel_accuracy", _fraction(result.pixel_accuracy)])
    for i, name in enumerate(result.class_names):
        writer.writerow([f"iou/{name}", "absent" if _absent(result, i) else _fraction(result.iou[i])])
    return atomic_write_text(path, buffer.getvalue())


def write_json(
    result: EvalResult,
    path: str | os.PathLike[str],
    metadata: Mapping[str, Scalar] | None = None,
) -> Path:
    """Write ``metadata`` merged with :meth:`EvalResult.to_dict` (NaN as ``null``)."""
    content = dict(metadata or {})
    clashes = sorted(set(content) & set(result.to_dict()))
    if clashes:
        raise ValueError(f"metadata keys {clashes} clash with result fields")
    content.update(result.to_dict())
    return atomic_write_json(path, content)


def _absent(result: EvalResult, i: int) -> bool:
    """Class ``i`` has no ground truth and no score (never predicted, or not scored)."""
    return bool(result.present) and not result.present[i] and math.isnan(result.iou[i])


def _class_cell(result: EvalResult, i: int) -> str:
    if _absent(result, i):
        return "absent"
    if result.present and not result.present[i]:
        return f"{_percent(result.iou[i])} (absent)"  # predicted but not in the ground truth
    return _percent(result.iou[i])


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100.0 * value:.2f}"


def _fraction(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.8f}"
