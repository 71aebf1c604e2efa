"""Segmentation metrics from a confusion matrix, with the Cityscapes conventions.

Convention (the one of ``cityscapesscripts``' ``evalPixelLevelSemanticLabeling``,
which this module reproduces; see ``tests/evaluation/test_eval_cityscapes_official.py``):

* pixels whose label is the ignore index (255) are not counted at all, whatever
  was predicted there;
* ``IoU_c = TP / (TP + FP + FN)`` over the remaining pixels;
* ``IoU_c`` is NaN when ``TP + FP + FN = 0``, i.e. the class is neither in the
  ground truth nor predicted on an evaluated pixel. A class that is absent from
  the ground truth but predicted somewhere has IoU 0;
* the mean IoU averages the non-NaN entries (NaN if all are NaN).

For 16-class (SYNTHIA) models, ``mIoU*`` averages the same per-class IoUs over the
13 classes of ``labels.subset_indices(16, 13)``.

An :class:`EvalResult` (what ``tufl evaluate`` and validation report) marks a class
without ground-truth pixels in the evaluated split as *absent* (``absent`` in tables,
listed under ``absent_classes`` in JSON). For a class set of a class definition file,
an absent class has no score (NaN in :attr:`EvalResult.iou`, ``null`` in JSON) and the
means average the *present* classes only. The 19/16/13 Cityscapes class sets keep the
cityscapesscripts numbers exactly: an absent class that is predicted somewhere scores 0
and counts in the mean (one never predicted has no score). When every class occurs in
the ground truth (Cityscapes val, the benchmarks) both rules give the same mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from tufl.data import labels


class ConfusionMatrix:
    """A ``[C, C]`` pixel count matrix (rows: ground truth, columns: prediction).

    Counts live on ``device`` and each :meth:`update` is one ``bincount`` over the
    batch (on CUDA, ``bincount`` sizes its output from the data: one host sync per
    update). Two extra counters sit behind the matrix: ignored pixels, and *invalid*
    pixels (a label that is neither a class nor the ignore index, or a prediction
    outside ``0..C-1``). Invalid pixels are counted rather than checked in every
    update; reading any result raises if there were any.
    """

    def __init__(
        self,
        num_classes: int,
        device: torch.device | str | None = None,
        ignore_index: int = labels.IGNORE_INDEX,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} collides with a class id (0..{num_classes - 1})")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # Layout: C*C matrix cells, then the ignored and the invalid counters.
        self._counts = torch.zeros(num_classes * num_classes + 2, dtype=torch.int64, device=device)

    @property
    def device(self) -> torch.device:
        return self._counts.device

    def update(self, pred: Tensor, label: Tensor) -> None:
        """Add a batch of predicted and ground-truth train-id maps of the same shape."""
        if pred.shape != label.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(label.shape)}; "
                "resize the prediction to the label resolution first"
            )
        if pred.is_floating_point() or label.is_floating_point():
            raise TypeError(f"expected integer class maps, got {pred.dtype} and {label.dtype}")
        c = self.num_classes
        pred = pred.to(self.device, torch.int64).flatten()
        label = label.to(self.device, torch.int64).flatten()
        ignored = label == self.ignore_index
        valid = (label >= 0) & (label < c) & (pred >= 0) & (pred < c)
        index = torch.where(valid, label * c + pred, c * c + 1)
        index = torch.where(ignored, c * c, index)
        self._counts += torch.bincount(index, minlength=c * c + 2)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add the counts of another matrix with the same classes (in place)."""
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise ValueError(
                f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one"
            )
        self._counts += other._counts.to(self.device)

    def all_reduce(self) -> None:
        """Sum the counts over data-parallel ranks (no-op without torch.distributed)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self._counts, op=dist.ReduceOp.SUM)

    def reset(self) -> None:
        self._counts.zero_()

    @property
    def num_ignored(self) -> int:
        """Pixels skipped because their label is the ignore index."""
        return int(self._counts[-2])

    @property
    def matrix(self) -> Tensor:
        """A copy of the ``[C, C]`` int64 counts (raises if invalid pixels were seen)."""
        invalid = int(self._counts[-1])
        if invalid:
            raise ValueError(
                f"{invalid} pixels had a label outside 0..{self.num_classes - 1} and != {self.ignore_index}, "
                f"or a prediction outside 0..{self.num_classes - 1}: check the label encoding "
                "(train ids expected) and the number of classes"
            )
        c = self.num_classes
        return self._counts[: c * c].view(c, c).clone()

    def iou(self) -> Tensor:
        """Per-class IoU, float64 on the CPU, NaN for classes with an empty union."""
        return iou_per_class(self.matrix)

    def miou(self, subset: Sequence[int] | None = None) -> float:
        """Mean IoU over all classes, or over the class ids in ``subset``."""
        return mean_iou(self.iou(), subset)

    def pixel_accuracy(self) -> float:
        return pixel_accuracy(self.matrix)


def iou_per_class(matrix: Tensor) -> Tensor:
    """IoU of each class of a ``[C, C]`` confusion matrix (rows: ground truth)."""
    m = matrix.detach().to("cpu", torch.float64)
    tp = m.diagonal()
    union = m.sum(0) + m.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def mean_iou(iou: Tensor, subset: Sequence[int] | None = None) -> float:
    """Mean of the non-NaN IoUs (optionally of the class ids in ``subset``)."""
    values = iou if subset is None else iou[list(subset)]
    return float(values.nanmean()) if values.numel() else float("nan")


def pixel_accuracy(matrix: Tensor) -> float:
    """Fraction of evaluated pixels predicted correctly (NaN if there are none)."""
    m = matrix.detach().to("cpu", torch.float64)
    total = m.sum()
    return float(m.diagonal().sum() / total) if total > 0 else float("nan")


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """Cityscapes names for 19/16/13 classes, ``class_<i>`` for any other count (a class
    definition file's names are passed to :meth:`EvalResult.from_confusion` instead)."""
    if num_classes in labels.SUPPORTED_NUM_CLASSES:
        return labels.class_names(num_classes)
    return tuple(f"class_{i}" for i in range(num_classes))


@dataclass(frozen=True, eq=False)
class EvalResult:
    """Summary of an evaluation: counts, per-class IoU and the mean scores.

    ``miou_13`` is the 13-class mIoU* of a 16-class model, ``None`` otherwise.
    ``settings`` records how the predictions were made (scales, flip, ...).
    """

    num_classes: int
    class_names: tuple[str, ...]
    confusion: Tensor
    # Per-class IoU; NaN for a class absent from the ground truth (see ``present``).
    iou: tuple[float, ...]
    # Mean IoU over the present classes.
    miou: float
    miou_13: float | None
    pixel_accuracy: float
    num_images: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    # Whether each class has ground-truth pixels in the evaluated split.
    present: tuple[bool, ...] = ()
    # Absent classes that were predicted score 0 and count in the means (cityscapesscripts).
    absent_scored: bool = True

    @classmethod
    def from_confusion(
        cls,
        confusion: ConfusionMatrix,
        num_images: int = 0,
        settings: dict[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        absent_scored: bool | None = None,
    ) -> EvalResult:
        """Scores of a confusion matrix; ``class_names`` default to :func:`default_class_names`.

        ``absent_scored`` (default: True for the default names, False for given ones, i.e. a
        class definition file's): see the module docstring.
        """
        matrix = confusion.matrix.cpu()
        c = confusion.num_classes
        names = tuple(class_names) if class_names is not None else default_class_names(c)
        if len(names) != c:
            raise ValueError(f"{len(names)} class names for a {c}-class confusion matrix")
        present = matrix.sum(1) > 0
        scored = class_names is None if absent_scored is None else absent_scored
        iou = iou_per_class(matrix)
        if not scored:
            iou = torch.where(present, iou, torch.full((c,), float("nan"), dtype=torch.float64))
        return cls(
            num_classes=c,
            class_names=names,
            confusion=matrix,
            iou=tuple(float(v) for v in iou),
            miou=mean_iou(iou),
            miou_13=mean_iou(iou, labels.subset_indices(16, 13)) if c == 16 and class_names is None else None,
            pixel_accuracy=pixel_accuracy(matrix),
            num_images=num_images,
            settings=dict(settings or {}),
            present=tuple(bool(p) for p in present),
            absent_scored=scored,
        )

    @property
    def absent_classes(self) -> tuple[str, ...]:
        """Names of the classes without ground-truth pixels in the evaluated split."""
        return tuple(n for n, p in zip(self.class_names, self.present, strict=True) if not p)

    def scores(self) -> dict[str, float]:
        """The headline numbers, keyed by their display names."""
        out = {"mIoU": self.miou}
        if self.miou_13 is not None:
            out["mIoU* (13 classes)"] = self.miou_13
        out["pixel accuracy"] = self.pixel_accuracy
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content (IoUs as fractions in [0, 1])."""
        return {
            "num_classes": self.num_classes,
            "num_images": self.num_images,
            "miou": self.miou,
            "miou_13": self.miou_13,
            "pixel_accuracy": self.pixel_accuracy,
            "iou": {n: (None if math.isnan(v) else v) for n, v in zip(self.class_names, self.iou, strict=True)},
            "absent_classes": list(self.absent_classes),
            "settings": self.settings,
            "confusion_matrix": self.confusion.tolist(),
        }
