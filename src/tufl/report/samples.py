"""The sample predictions of a report: which images, read how, predicted by each run.

The images come from a run's validation split (``data.val``: shown with their ground
truth) or, where no run has one, from its target domain (``data.target``: unlabelled,
shown alone); ``count`` of them, evenly spread over the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tufl.data.io import DEFAULT_MAX_IMAGE_PIXELS
from tufl.data.registry import OWN_DATA, open_dataset
from tufl.data.transforms import image_to_tensor
from tufl.evaluation.inference import eval_mode, predict_probs


@dataclass(frozen=True)
class SampleSource:
    """A dataset section (a :class:`~tufl.data.config.DatasetConfig`) to draw samples from."""

    section: Any
    # Whether ground truth is shown (read) beside the input.
    labelled: bool
    # Where the section comes from, e.g. "data.val of stage1".
    origin: str
    # data.max_image_pixels of the run's config: larger images are refused before decoding.
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    def describe(self) -> str:
        """``cityscapes val (data/cityscapes; data.val of stage1)``."""
        section = self.section
        where = "" if section.name in OWN_DATA else f"{section.root}; "  # own data: the title names its root
        return f"{section.title} ({where}{self.origin})"


@dataclass(frozen=True)
class Sample:
    """One image (``HxWx3`` uint8) and its train-id label map (None when not shown)."""

    name: str
    image: np.ndarray
    label: np.ndarray | None


def sample_source(configs: Sequence[tuple[str, Any]]) -> SampleSource | None:
    """The ``data.val`` of the first run (``(label, config)`` pairs) that has one, else the
    ``data.target`` of the first that has one; None when no run has either."""
    for label, cfg in configs:
        if cfg.data.val is not None:
            return SampleSource(cfg.data.val, True, f"data.val of {label}", cfg.data.max_image_pixels)
    for label, cfg in configs:
        if cfg.data.target is not None:
            return SampleSource(cfg.data.target, False, f"data.target of {label}", cfg.data.max_image_pixels)
    return None


def spread_indices(size: int, count: int) -> list[int]:
    """``count`` distinct indices evenly spread over ``0..size-1`` (all of them when fewer)."""
    if count <= 0 or size <= 0:
        return []
    if count >= size:
        return list(range(size))
    return sorted({int(round(v)) for v in np.linspace(0, size - 1, count)})


def read_samples(source: SampleSource, num_classes: int, count: int) -> list[Sample]:
    """``count`` images of ``source`` (with labels when it is labelled and has them)."""
    if count <= 0:
        return []
    dataset = open_dataset(source.section, num_classes, False, source.max_image_pixels)
    with_labels = source.labelled and dataset.has_labels
    samples = []
    for i in spread_indices(len(dataset), count):
        label = dataset.read_label(i) if with_labels else None
        samples.append(Sample(dataset.sample_name(i), dataset.read_image(i),
                              None if label is None else np.minimum(label, 255).astype(np.uint8)))
    return samples


def predict_samples(model: torch.nn.Module, samples: Sequence[Sample], device: torch.device) -> list[np.ndarray]:
    """Each sample's predicted train ids (``HxW`` uint8) by ``model`` on ``device``; the
    model goes back to the CPU afterwards."""
    out = []
    model.to(device)
    try:
        with eval_mode(model):
            for sample in samples:
                probs = predict_probs(model, image_to_tensor(sample.image)[None])
                out.append(probs.argmax(1)[0].to(torch.uint8).cpu().numpy())
    finally:
        model.to("cpu")
    return out
