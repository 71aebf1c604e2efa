"""What a report is made of: each run's scores and metric records, and the sample rows
(read by the figures, the page and the summary alike)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ModelReport:
    """One run (or trained model): its scores and its run's metric records.

    ``miou`` and ``iou`` (one value per class, NaN for a class absent from the split)
    are None for a run without scores (no validation record); ``scored_at`` is the
    iteration they were measured at and ``best_miou`` the best validation mIoU of the
    run, where known.
    """

    name: str
    miou: float | None
    iou: list[float] | None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float | None = None
    scored_at: int | None = None
    best_miou: float | None = None

    @property
    def scored(self) -> bool:
        """Whether the run has scores (a validation record or an evaluation)."""
        return self.miou is not None and self.iou is not None

    @property
    def iterations(self) -> int | None:
        """The last iteration of its metric records (None without records)."""
        its = [r["iter"] for r in self.metrics if isinstance(r.get("iter"), int)]
        return max(its) if its else None


@dataclass(frozen=True)
class QualitativeRow:
    """One image with its ground truth (None for unlabelled data) and each run's
    prediction (train ids, 255 = ignore)."""

    image: np.ndarray
    ground_truth: np.ndarray | None
    predictions: dict[str, np.ndarray]


def scored(models: Sequence[ModelReport]) -> list[ModelReport]:
    """The models with scores, in order."""
    return [m for m in models if m.scored]


def gains(models: Sequence[ModelReport]) -> list[float | None]:
    """Each model's mIoU gain over the model before it (None for the first and where
    either has no finite mIoU)."""
    out: list[float | None] = [None]
    for a, b in zip(models, models[1:]):
        finite = a.miou is not None and b.miou is not None and math.isfinite(a.miou) and math.isfinite(b.miou)
        out.append(b.miou - a.miou if finite else None)  # type: ignore[operator]
    return out
