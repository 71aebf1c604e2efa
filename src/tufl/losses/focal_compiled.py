"""TUFL's step as pure functions for ``torch.compile`` (``TUFL(compile=True)``).

The eager loss runs about 165 small tensor operations per call; on a GPU at
training sizes their launches, not their memory traffic, set the time. Compiled as
one graph, the per-pixel loss (forward, and backward derived by autograd), the
threshold update and the masked mean become a few fused kernels. The formulas are
those of :mod:`tufl.losses.focal_terms` (PAPER.md), written with plain
differentiable operations; the stop-gradients of PAPER.md are ``detach()``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torch import Tensor

from tufl.losses.selection import thresholded_mean
from tufl.losses.thresholds import ema_thresholds, history_weight, order_statistic_psi


def differentiable_focal_terms(
    weak: Tensor,
    strong: Tensor,
    gamma: float = 2.0,
    focal_type: int = 1,
    class_weights: Tensor | None = None,
    detach_focal: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pixel loss, confidence and pseudo-class of ``[B, C, H, W]`` logits, each ``[B, H, W]``.

    ``l = -w sum_c lam_c sg(P_c) log Q_c + sum_c lam_c (sg(P_c) log sg(P_c) - P_c log P_c)``:
    the second sum is 0 in value and carries the entropy gradient to the weak view.
    """
    dtype = torch.promote_types(weak.dtype, torch.float32)
    log_p = torch.log_softmax(weak.to(dtype), dim=1)
    log_q = torch.log_softmax(strong.to(dtype), dim=1)
    p = log_p.exp()
    p_sg, log_p_sg = p.detach(), log_p.detach()
    lam = None if class_weights is None else class_weights.to(dtype).view(1, -1, 1, 1)
    lam_p_sg = p_sg if lam is None else lam * p_sg
    conf, cls = p_sg.max(dim=1, keepdim=True)
    cross = (lam_p_sg * log_q).sum(dim=1)
    if gamma == 0.0:
        w = torch.ones_like(cross)
    else:
        q_k = log_q.gather(1, cls).exp().squeeze(1)
        base = (1.0 if focal_type == 1 else conf.squeeze(1)) - q_k
        magnitude = base.abs()
        # |base|^gamma with the subgradient 0 at base = 0 (infinite slope for gamma < 1)
        w = torch.where(magnitude > 0, magnitude.clamp(min=torch.finfo(dtype).tiny).pow(gamma), 0.0)
        if detach_focal:
            w = w.detach()
    entropy_p = p * log_p if lam is None else lam * p * log_p
    entropy_term = (lam_p_sg * log_p_sg).sum(dim=1) - entropy_p.sum(dim=1)
    return -w * cross + entropy_term, conf.squeeze(1), cls.squeeze(1)


def tufl_step(
    weak: Tensor,
    strong: Tensor,
    valid: Tensor | None,
    thresholds: Tensor,
    step: Tensor,
    focal: tuple[float, int, Tensor | None, bool],
    update: tuple[float, float, float, float, float] | None,
    ohem_ratio: float,
    loss_floor: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """One whole TUFL call: ``(loss, pass_fraction, thresholds)``, without side effects.

    ``focal = (gamma, focal_type, class_weights, detach_focal)``; ``update = (a, a_decay,
    b, d, min_confidence)`` updates the thresholds first (returned, not written), ``None``
    keeps them; ``loss_floor`` as in :func:`tufl.losses.selection.thresholded_mean`.
    """
    per_pixel, conf, cls = differentiable_focal_terms(weak, strong, *focal)
    return tufl_reduction(per_pixel, conf, cls, valid, thresholds, step, update, ohem_ratio, loss_floor)


def tufl_reduction(
    per_pixel: Tensor,
    conf: Tensor,
    cls: Tensor,
    valid: Tensor | None,
    thresholds: Tensor,
    step: Tensor,
    update: tuple[float, float, float, float, float] | None,
    ohem_ratio: float,
    loss_floor: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """The rest of a TUFL call after the per-pixel terms, without side effects (see :func:`tufl_step`)."""
    conf = conf.float()
    if update is not None:
        a, a_decay, b, d, min_confidence = update
        psi = order_statistic_psi(conf, cls, valid, thresholds, b, d, min_confidence)
        thresholds = ema_thresholds(thresholds, psi, history_weight(step, a, a_decay))
    loss, pass_fraction = thresholded_mean(per_pixel, conf, cls, valid, thresholds, ohem_ratio, loss_floor)
    return loss, pass_fraction, thresholds


@functools.cache
def compiled(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` through ``torch.compile`` (one compiled object per function)."""
    return torch.compile(function, dynamic=False)
