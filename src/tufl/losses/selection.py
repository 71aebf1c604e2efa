"""Pixel selection shared by the losses: OHEM by ratio and the masked mean.

Both work on device without host synchronisation: the number of kept pixels stays
a tensor, and OHEM ranks pixels with one integer sort (radix sort on the CPU).
"""

from __future__ import annotations

import torch
from torch import Tensor


def float_order_keys(values: Tensor) -> Tensor:
    """int64 keys that sort like the float32-rounded ``values`` (``-0.0`` before ``+0.0``)."""
    bits = values.detach().to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    # Negative floats: flip the magnitude bits so that larger magnitudes sort lower.
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def top_fraction_mask(values: Tensor, candidates: Tensor, ratio: float) -> Tensor:
    """Keep the ``ceil(ratio * n)`` largest ``values`` among the ``n`` ``candidates``.

    ``values`` and ``candidates`` (bool) have the same shape; the result is a bool
    mask of that shape. ``ratio >= 1`` returns ``candidates``. Ties at the cut are
    broken arbitrarily, so exactly ``ceil(ratio * n)`` pixels are kept.
    """
    if ratio >= 1.0:
        return candidates
    flat_candidates = candidates.reshape(-1)
    # Ascending sort of negated keys = descending values; non-candidates go last.
    keys = torch.where(flat_candidates, -float_order_keys(values.reshape(-1)), 1 << 40)
    order = torch.argsort(keys)
    exact = torch.float32 if values.device.type == "mps" else torch.float64
    keep_count = torch.ceil(flat_candidates.sum().to(exact) * ratio)
    ranks = torch.arange(keys.numel(), device=values.device)
    kept = torch.zeros_like(flat_candidates).scatter_(0, order, ranks < keep_count)
    return kept.view(candidates.shape)


def masked_mean(values: Tensor, keep: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean of ``values`` where ``keep``; weighted by ``weights`` if given; 0 if none kept.

    The result stays connected to the graph of ``values`` (zero gradient when no pixel
    is kept) and is never NaN for finite kept values.
    """
    total = torch.where(keep, values, 0.0).sum()
    if weights is None:
        return total / keep.sum().clamp(min=1)
    denominator = torch.where(keep, weights, 0.0).sum()
    return total / denominator.clamp(min=torch.finfo(denominator.dtype).tiny)


def thresholded_mean(
    per_pixel: Tensor,
    conf: Tensor,
    cls: Tensor,
    valid: Tensor | None,
    thresholds: Tensor,
    ohem_ratio: float,
    loss_floor: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Mean of ``per_pixel`` over valid pixels with ``conf > thresholds[cls]``, after OHEM.

    ``loss_floor > 0`` first clamps ``per_pixel`` at that floor (``torch.clamp``: no
    gradient where the loss is below it; OHEM ranks the clamped values), as the authors'
    release does. Returns ``(loss, pass_fraction)``: the loss is 0 (still connected to
    the graph) when no pixel passes; ``pass_fraction`` is the detached fraction of
    valid pixels that passed the thresholds.
    """
    if loss_floor > 0.0:
        per_pixel = per_pixel.clamp(min=loss_floor)
    passing = conf > thresholds.index_select(0, cls.reshape(-1)).view(cls.shape)  # thresholds[cls], faster
    if valid is not None:
        passing &= valid
    keep = top_fraction_mask(per_pixel, passing, ohem_ratio)
    return masked_mean(per_pixel, keep), pass_fraction(passing, valid)


def pass_fraction(passing: Tensor, valid: Tensor | None) -> Tensor:
    """The detached share of the ``valid`` pixels (all without a mask) that are ``passing``
    (a mask already restricted to the valid ones); 0 when none is valid."""
    counted = passing.numel() if valid is None else valid.sum().clamp(min=1)
    return (passing.sum() / counted).detach()
