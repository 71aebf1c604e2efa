"""Slow, literal TUFL: the yardstick for tests and benchmarks only.

:class:`ReferenceTUFL` follows PAPER.md step by step, the way one would first
write it: ``softmax`` then ``log``, a Python loop over classes that sorts each
class's confidences on its own, a loop that assigns the per-class thresholds to
the pixels, boolean indexing and a sort for OHEM. It is deliberately not
optimised and uses host synchronisation freely; train with :class:`tufl.losses.TUFL`.

It keeps the same state (``thresholds``, ``step``) and follows the same
conventions as :class:`tufl.losses.TUFL` (threshold update only in training mode,
OHEM keeps ``ceil(r * n)`` pixels), but knows nothing of ``torch.distributed``.
With saturated logits ``log(softmax)`` can produce ``0 * -inf = nan``; keep
benchmark and test logits moderate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tufl.losses.thresholds import THRESHOLD_CAP
from tufl.losses.arguments import (
    check_logit_pair,
    class_weight_tensor,
)
from tufl.runtime.checks import (
    focal_problems,
    ratio_problems,
    threshold_problems,
)


class ReferenceTUFL(nn.Module):
    """Literal transcription of PAPER.md's TUFL (same arguments as ``TUFL``)."""

    def __init__(
        self,
        num_classes: int,
        gamma: float = 2.0,
        focal_type: int = 1,
        theta0: float = 0.8,
        a: float = 0.9,
        b: float = 0.8,
        d: float = 8.0,
        a_decay: float = 0.0,
        ohem_ratio: float = 1.0,
        class_weights: Sequence[float] | Tensor | None = None,
        detach_focal: bool = False,
    ) -> None:
        super().__init__()
        problems = (
            focal_problems(gamma, focal_type)
            + threshold_problems(theta0, a, b, d, a_decay)
            + ratio_problems("ohem_ratio", ohem_ratio)
        )
        if problems:
            raise ValueError("ReferenceTUFL: " + "; ".join(problems))
        self.num_classes = num_classes
        self.gamma = float(gamma)
        self.focal_type = focal_type
        self.a, self.b, self.d, self.a_decay = float(a), float(b), float(d), float(a_decay)
        self.ohem_ratio = float(ohem_ratio)
        self.detach_focal = detach_focal
        weights = class_weight_tensor(class_weights, num_classes)
        self.register_buffer("class_weights", torch.ones(num_classes) if weights is None else weights, persistent=False)
        self.register_buffer("thresholds", torch.full((num_classes,), float(theta0), dtype=torch.float32))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.last_pass_fraction = torch.zeros(())

    def update_thresholds(self, conf: Tensor, cls: Tensor) -> None:
        """PAPER.md's pseudo-code: one sort per class, then the EMA and the clip."""
        psi = self.thresholds.clone()
        for c in range(self.num_classes):
            theta_c = float(self.thresholds[c])
            class_conf = conf[cls == c]
            n_c = class_conf.numel()
            if n_c == 0:
                continue  # psi_c = theta_c
            s = torch.sort(torch.cat([class_conf, self.thresholds[c : c + 1]]), descending=True).values
            psi[c] = s[math.floor((n_c + 1) * self.b * theta_c**self.d)]
        a_t = 1.0 - self.a * math.exp(-int(self.step) * self.a_decay) if self.a_decay > 0 else self.a
        self.thresholds.copy_((a_t * self.thresholds + (1.0 - a_t) * psi).clamp(max=THRESHOLD_CAP))
        self.step += 1

    def forward(self, weak_logits: Tensor, strong_logits: Tensor, valid: Tensor | None = None) -> Tensor:
        check_logit_pair(weak_logits, strong_logits, valid, self.num_classes)
        z1, z2 = weak_logits.float(), strong_logits.float()
        if valid is None:
            valid = torch.ones_like(z1[:, 0], dtype=torch.bool)
        p = torch.softmax(z1, dim=1)
        log_p = torch.log(p)
        q = torch.softmax(z2, dim=1)
        log_q = torch.log(q)
        conf, cls = p.detach().max(dim=1)

        if self.training:
            self.update_thresholds(conf[valid], cls[valid])

        pixel_threshold = torch.empty_like(conf)
        for c in range(self.num_classes):
            pixel_threshold[cls == c] = self.thresholds[c]
        passing = valid & (conf > pixel_threshold)
        self.last_pass_fraction = passing.sum() / valid.sum().clamp(min=1)

        q_hat = q.gather(1, cls[:, None])[:, 0]
        base = 1.0 - q_hat if self.focal_type == 1 else p.detach().gather(1, cls[:, None])[:, 0] - q_hat
        w = base.abs() ** self.gamma
        if self.detach_focal:
            w = w.detach()
        sg_p, sg_log_p = p.detach(), log_p.detach()
        lam = self.class_weights.view(1, -1, 1, 1)
        per_class = lam * (sg_p * (sg_log_p - w[:, None] * log_q) - p * log_p)
        per_pixel = per_class.sum(dim=1)

        selected = per_pixel[passing]
        if selected.numel() == 0:
            return per_pixel.sum() * 0.0
        if self.ohem_ratio < 1.0:
            keep = math.ceil(self.ohem_ratio * selected.numel())
            selected = torch.sort(selected, descending=True).values[:keep]
        return selected.mean()
