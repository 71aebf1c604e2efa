"""Human- and machine-readable reports of an :class:`EvalResult`."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from pathlib import Path

from tufl.atomic import atomic_write_json, atomic_write_text
from tufl.evaluation.metrics import EvalResult

Scalar = str | int | float | bool | None


def format_table(result: EvalResult, title: str | None = None) -> str:
    """Per-class IoU and the mean scores as an aligned text table (IoU in %)."""
    width = max(len("pixel accuracy"), *(len(n) for n in result.class_names), *(len(k) for k in result.scores()))
    lines = [title] if title else []
    rule = "-" * (width + 10)
    lines += [f"{'class':<{width}}  {'IoU (%)':>8}", rule]
    lines += [f"{name:<{width}}  {_percent(v):>8}" for name, v in zip(result.class_names, result.iou, strict=True)]
    lines.append(rule)
    lines += [f"{name:<{width}}  {_percent(v):>8}" for name, v in result.scores().items()]
    return "\n".join(lines)


def write_csv(
    result: EvalResult,
    path: str | os.PathLike[str],
    metadata: Mapping[str, Scalar] | None = None,
) -> Path:
    """Write ``field,value`` rows: metadata, the mean scores, then ``iou/<class>``.

    Scores are fractions in [0, 1]; a NaN IoU is written as ``nan``.
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
    for name, value in zip(result.class_names, result.iou, strict=True):
        writer.writerow([f"iou/{name}", _fraction(value)])
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


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100.0 * value:.2f}"


def _fraction(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.8f}"
