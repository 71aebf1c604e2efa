"""Pixel weights of a mixed image and the weighted cross-entropy on it.

* Pasted (source) pixels carry ground truth: weight 1.
* Target pixels carry pseudo-labels: per sample, weight = the fraction of that
  target image's pixels whose pseudo-label confidence is >= a threshold
  (0.968 as in DACS), so a sample the pseudo-labeller is unsure of counts less.
* Optionally, a band along the boundary of the pasted mask gets its weight
  multiplied (by 2 by default): mixing artefacts and context changes are largest
  there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tufl.data.labels import IGNORE_INDEX


def confident_fraction(confidences: Tensor, threshold: float) -> Tensor:
    """``[B]`` float32: fraction of pixels of each ``[B, H, W]`` map with confidence >= threshold."""
    if confidences.dim() != 3:
        raise ValueError(f"confidences must be [B, H, W], got {tuple(confidences.shape)}")
    return (confidences >= threshold).flatten(1).float().mean(dim=1)


def boundary_band(mask: Tensor, width: int) -> Tensor:
    """``[B, H, W]`` bool: pixels within ``width`` pixels of the boundary of ``mask``.

    A pixel is in the band when a pixel on the other side of the boundary lies in
    its ``(2 * width + 1)``-square neighbourhood, so the band is ``width`` pixels
    thick on each side (computed with max-pool dilation and erosion). The image
    border is not a boundary. ``width == 0`` gives an empty band.
    """
    if width < 0:
        raise ValueError(f"boundary band width must be >= 0, got {width}")
    if width == 0:
        return torch.zeros_like(mask, dtype=torch.bool)
    m = mask.unsqueeze(1).float()
    kernel = 2 * width + 1
    dilated = F.max_pool2d(m, kernel, stride=1, padding=width) > 0
    outside_dilated = F.max_pool2d(1.0 - m, kernel, stride=1, padding=width) > 0
    # In the band: outside pixels reached by the dilation, inside pixels removed by the erosion.
    return (dilated & outside_dilated).squeeze(1)


def pixel_weights(
    mask: Tensor,
    target_weight: Tensor,
    band_width: int = 0,
    band_factor: float = 2.0,
) -> Tensor:
    """``[B, H, W]`` float32 loss weights of mixed images.

    Args:
        mask: ``[B, H, W]`` bool, True on pasted (ground-truth) pixels.
        target_weight: ``[B]`` weight of the remaining pixels of each sample
            (e.g. :func:`confident_fraction`).
        band_width: width of the boundary band (see :func:`boundary_band`); 0 = off.
        band_factor: factor applied to the weights inside the band.
    """
    if target_weight.shape != mask.shape[:1]:
        raise ValueError(
            f"target_weight must be [B] = [{mask.shape[0]}], got {tuple(target_weight.shape)}"
        )
    others = target_weight.to(mask.device, torch.float32).view(-1, 1, 1)
    weights = torch.where(mask, torch.ones_like(others), others)
    if band_width > 0:
        weights = torch.where(boundary_band(mask, band_width), weights * band_factor, weights)
    return weights


def pixel_cross_entropy(logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """``[B, H, W]`` per-pixel cross-entropy; 0 on pixels labelled ``ignore_index``."""
    if logits.dim() != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"logits [B, C, H, W] and labels [B, H, W] disagree: {tuple(logits.shape)} "
            f"vs {tuple(labels.shape)}"
        )
    return F.cross_entropy(logits, labels.long(), ignore_index=ignore_index, reduction="none")


def mixed_loss(
    logits: Tensor, labels: Tensor, weights: Tensor, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Weighted cross-entropy of a mixed batch: ``sum_i w_i * CE_i / #{i : y_i != ignore}``.

    The denominator counts all non-ignored pixels (whatever their weight), so a
    low target weight lowers the loss instead of being normalised away. Returns 0
    (with a graph) when every pixel is ignored.
    """
    ce = pixel_cross_entropy(logits, labels, ignore_index)
    valid = (labels != ignore_index).sum().clamp(min=1)
    return (ce * weights).sum() / valid
