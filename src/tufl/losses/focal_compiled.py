"""The per-pixel TUFL terms as one pure function for ``torch.compile`` (GPU option).

Computes what the chunked kernel of :mod:`tufl.losses.focal_terms` computes (loss,
confidence, pseudo-class and both gradient maps, same formulas) as plain tensor
expressions over the whole ``[B, C, N]`` batch, so the compiler can fuse them into a
few passes over the logits. On a GPU this saves most of the eager kernels' memory
traffic and launches; on the CPU the chunked eager kernel is faster.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

Terms = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


def per_pixel_terms(
    weak: Tensor, strong: Tensor, class_weights: Tensor | None, gamma: float, focal_type: int, detach_focal: bool
) -> Terms:
    """``(loss, conf, cls, grad_weak, grad_strong)`` of ``[B, C, N]`` logits; the first three ``[B, 1, N]``."""
    num_classes = weak.shape[1]
    ids = torch.arange(num_classes, device=weak.device).view(1, -1, 1)
    top1 = weak.amax(dim=1, keepdim=True)
    e1 = torch.exp(weak - top1)
    s1 = e1.sum(dim=1, keepdim=True)
    conf = 1.0 / s1
    p = e1 * conf
    log_p = weak - top1 - torch.log(s1)
    # First maximum: the largest descending code among the classes where e1 == 1.
    codes = (num_classes - ids).to(weak.dtype)
    cls = (num_classes - (torch.floor(e1) * codes).amax(dim=1, keepdim=True)).long().clamp(0, num_classes - 1)
    is_k = ids == cls

    top2 = strong.amax(dim=1, keepdim=True)
    e2 = torch.exp(strong - top2)
    s2 = e2.sum(dim=1, keepdim=True)
    q = e2 / s2
    log_q = strong - top2 - torch.log(s2)

    lam_p = p if class_weights is None else p * class_weights.view(1, -1, 1)
    cross = (lam_p * log_q).sum(dim=1, keepdim=True)  # A
    weight_sum = lam_p.sum(dim=1, keepdim=True)  # S
    q_k = torch.where(is_k, q, 0.0).sum(dim=1, keepdim=True)
    base = (1.0 if focal_type == 1 else conf) - q_k
    if gamma == 0.0:
        w, slope = torch.ones_like(base), torch.zeros_like(base)
    else:
        w = base.abs().pow(gamma)
        if detach_focal:
            slope = torch.zeros_like(base)
        else:
            slope = -gamma * base.abs().pow(gamma - 1.0) * torch.sign(base)
            if gamma < 1.0:
                slope = torch.where(base == 0, 0.0, slope)
    loss = -w * cross

    u = log_p + 1.0 if class_weights is None else (log_p + 1.0) * class_weights.view(1, -1, 1)
    u_bar = (p * u).sum(dim=1, keepdim=True)
    grad_weak = p * (u_bar - u)
    focal_term = cross * slope * q_k  # A w' Q_k
    grad_strong = q * (w * weight_sum + focal_term) - w * lam_p - torch.where(is_k, focal_term, 0.0)
    return loss, conf, cls, grad_weak, grad_strong


@functools.cache
def _compiled_terms():
    return torch.compile(per_pixel_terms, fullgraph=True, dynamic=False)


def compiled_per_pixel_terms(
    weak: Tensor, strong: Tensor, class_weights: Tensor | None, gamma: float, focal_type: int, detach_focal: bool
) -> Terms:
    """:func:`per_pixel_terms` through ``torch.compile`` (compiled on first use for each shape)."""
    return _compiled_terms()(weak, strong, class_weights, gamma, focal_type, detach_focal)
