"""Supervised pixel cross-entropy of the source branch (``L_sup`` in PAPER.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from tufl.data.labels import IGNORE_INDEX
from tufl.losses.arguments import ConfiguredLoss, check_logits
from tufl.losses.selection import masked_mean, top_fraction_mask
from tufl.runtime.checks import class_weight_problems, ratio_problems


@dataclass(frozen=True)
class SupervisedConfig:
    """Supervised cross-entropy: optional class weights (null = all ones) and OHEM ratio (1 = off)."""

    # Fixed per-class weights lambda_c (null = all 1).
    class_weights: tuple[float, ...] | None = None
    # Keep this fraction of the largest per-pixel losses (1 = off).
    ohem_ratio: float = 1.0

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return class_weight_problems(self.class_weights) + ratio_problems("ohem_ratio", self.ohem_ratio)


class SupervisedCE(ConfiguredLoss):
    """Pixel cross-entropy with ignore index 255, optional class weights and OHEM.

    Called as ``loss(logits, labels)`` with logits ``[B, C, H, W]`` and integer labels
    ``[B, H, W]`` in ``0..C-1`` or 255. Per pixel ``l_i = lam_{y_i} * CE_i``; OHEM keeps
    the ``ceil(ohem_ratio * n)`` largest ``l_i`` among the ``n`` labelled pixels; the
    result is ``sum l_i / sum lam_{y_i}`` over the kept pixels (the plain mean without
    class weights), which equals ``F.cross_entropy(..., weight=lam)`` when OHEM is
    off. Computed in float32 whatever the autocast state; 0 when no pixel is labelled.
    ``SupervisedCE(num_classes, cfg=None, **overrides)`` with the fields of :class:`SupervisedConfig`.
    """

    Config: ClassVar[type] = SupervisedConfig

    def __init__(self, num_classes: int, cfg: SupervisedConfig | None = None, **overrides: Any) -> None:
        super().__init__(num_classes, cfg, **overrides)
        self.ohem_ratio = float(self.config.ohem_ratio)

    def extra_repr(self) -> str:
        weighted = self.class_weights is not None
        return f"num_classes={self.num_classes}, ohem_ratio={self.ohem_ratio}, weighted={weighted}"

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        check_logits(logits, self.num_classes)
        expected = (logits.shape[0], *logits.shape[2:])
        if tuple(labels.shape) != expected or labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(
                f"labels: expected an integer tensor of shape {expected}, got {labels.dtype} {tuple(labels.shape)}"
            )
        labels = labels.long()
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
            weight = None if self.class_weights is None else self.class_weights.to(logits.dtype)
            per_pixel = F.cross_entropy(logits, labels, weight=weight, ignore_index=IGNORE_INDEX, reduction="none")
            labelled = labels != IGNORE_INDEX
            keep = top_fraction_mask(per_pixel, labelled, self.ohem_ratio)
            if weight is None:
                return masked_mean(per_pixel, keep)
            pixel_weights = weight[torch.where(labelled, labels, 0)]
            return masked_mean(per_pixel, keep, pixel_weights)


__all__ = ["SupervisedCE", "SupervisedConfig"]
