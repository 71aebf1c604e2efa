"""Slow, literal TUFL: the yardstick for tests and benchmarks only.

:class:`ReferenceTUFL` follows PAPER.md step by step, the way one would first
write it: ``softmax`` then ``log``, a Python loop over classes that sorts each
class's confidences on its own, a loop that assigns the per-class thresholds to
the pixels, boolean indexing and a sort for OHEM. It is deliberately not
optimised and uses host synchronisation freely; train with :class:`tufl.losses.TUFL`.

It keeps the same state (``thresholds``, ``step``) and follows the same
conventions as :class:`tufl.losses.TUFL` (threshold update only in training mode,
counted losses clamped at ``loss_floor``, OHEM keeps ``ceil(r * n)`` pixels), but
knows nothing of ``torch.distributed``.
With saturated logits ``log(softmax)`` can produce ``0 * -inf = nan``; keep
benchmark and test logits moderate.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from tufl.losses.arguments import ConfiguredLoss, check_logit_pair
from tufl.losses.thresholds import THRESHOLD_CAP
from tufl.losses.tufl import TUFLConfig


class ReferenceTUFL(ConfiguredLoss):
    """Literal transcription of PAPER.md's TUFL, built like ``TUFL`` (from :class:`TUFLConfig`;
    ``backend`` is ignored)."""

    Config: ClassVar[type] = TUFLConfig

    def __init__(self, num_classes: int, cfg: TUFLConfig | None = None, **overrides: Any) -> None:
        super().__init__(num_classes, cfg, **overrides)
        cfg = self.config
        self.gamma, self.focal_type, self.detach_focal = float(cfg.gamma), cfg.focal_type, cfg.detach_focal
        self.a, self.b, self.d, self.a_decay = float(cfg.a), float(cfg.b), float(cfg.d), float(cfg.a_decay)
        self.ohem_ratio, self.loss_floor = float(cfg.ohem_ratio), float(cfg.loss_floor)
        if self.class_weights is None:
            self.class_weights = torch.ones(num_classes)
        self.register_buffer("thresholds", torch.full((num_classes,), float(cfg.theta0), dtype=torch.float32))
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
        if self.loss_floor > 0:
            selected = selected.clamp(min=self.loss_floor)
        if selected.numel() == 0:
            return per_pixel.sum() * 0.0
        if self.ohem_ratio < 1.0:
            keep = math.ceil(self.ohem_ratio * selected.numel())
            selected = torch.sort(selected, descending=True).values[:keep]
        return selected.mean()
