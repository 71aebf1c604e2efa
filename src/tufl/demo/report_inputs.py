"""What the demo's report is made of: each trained model's scores and records, and the
qualitative rows (read by the figures, the page and the summary alike)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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


def gains(models: Sequence[ModelReport]) -> list[float | None]:
    """Each model's mIoU gain over the model before it (None for the first)."""
    return [None] + [b.miou - a.miou for a, b in zip(models, models[1:])]
