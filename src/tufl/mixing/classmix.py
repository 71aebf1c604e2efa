"""ClassMix from source to target, with the classes chosen per sample.

For every sample separately, a random subset of the classes present in *its own*
source label is chosen (uniformly, without replacement) and the pixels of those
classes form the mask ``M``:

    x_mix = M * x_s + (1 - M) * x_t,    y_mix = M * y_s + (1 - M) * yhat_t

Ignored source pixels (255, or any value outside ``0..C-1``) belong to no class
and are never pasted. Everything runs over the whole batch at once.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from tufl.runtime.draws import uniform
from tufl.mixing.relations import add_related_classes

ClassCount = Callable[[Tensor], Tensor]


class ClassMixResult(NamedTuple):
    """Output of :func:`classmix`."""

    images: Tensor  # [B, 3, H, W] mixed images
    labels: Tensor  # [B, H, W] mixed labels
    mask: Tensor  # [B, H, W] bool, True where the source was pasted
    selected: Tensor  # [B, C] bool, the classes pasted per sample


def _class_index(labels: Tensor, num_classes: int) -> Tensor:
    """``[B, H*W]`` int64 class index per pixel, ``num_classes`` for ignored pixels."""
    flat = labels.reshape(labels.shape[0], -1).long()
    in_range = (flat >= 0) & (flat < num_classes)
    return torch.where(in_range, flat, torch.full_like(flat, num_classes))


def class_presence(labels: Tensor, num_classes: int) -> Tensor:
    """``[B, C]`` bool: which classes occur in each label map ``[B, H, W]``.

    Values outside ``0..C-1`` (255 in particular) count as ignored.
    """
    if labels.dim() != 3:
        raise ValueError(f"labels must be [B, H, W], got shape {tuple(labels.shape)}")
    index = _class_index(labels, num_classes)
    present = torch.zeros(labels.shape[0], num_classes + 1, dtype=torch.bool, device=labels.device)
    present.scatter_(1, index, True)
    return present[:, :num_classes]


def class_pixel_mask(labels: Tensor, selected: Tensor) -> Tensor:
    """``[B, H, W]`` bool: pixels whose class is selected in ``selected`` ``[B, C]``."""
    num_classes = selected.shape[1]
    if labels.dim() != 3 or selected.shape[0] != labels.shape[0]:
        raise ValueError(
            f"labels [B, H, W] and selected [B, C] disagree: {tuple(labels.shape)} "
            f"vs {tuple(selected.shape)}"
        )
    lookup = torch.cat([selected, selected.new_zeros(selected.shape[0], 1)], dim=1)
    return lookup.gather(1, _class_index(labels, num_classes)).view(labels.shape)


def half_class_count(num_present: Tensor) -> Tensor:
    """``ceil(n / 2)``: the number of classes ClassMix pastes out of ``n`` present."""
    return (num_present + 1) // 2


def longtail_class_count(num_present: Tensor) -> Tensor:
    """``max(ceil(n / 2) - 2, 1)``, capped at ``n``: ClassMix count on long-tail steps."""
    return torch.minimum(torch.clamp(half_class_count(num_present) - 2, min=1), num_present)


def select_random_classes(candidates: Tensor, counts: Tensor, generator: torch.Generator) -> Tensor:
    """Pick ``counts[b]`` of the candidate classes of each row, uniformly without replacement.

    Args:
        candidates: ``[B, C]`` bool, the classes each sample may choose from.
        counts: ``[B]`` int, how many to pick per sample (capped by the candidates).
        generator: source of randomness (see :mod:`tufl.runtime.draws`).

    Returns:
        ``[B, C]`` bool selection. Random scores rank the candidates of each row;
        the ``counts[b]`` best-ranked ones are kept, which is a uniform subset.
    """
    b, c = candidates.shape
    scores = uniform((b, c), generator, candidates.device)
    scores = scores.masked_fill(~candidates, -1.0)  # non-candidates rank last
    order = scores.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(c, device=candidates.device).expand(b, c)
    )
    return candidates & (ranks < counts.to(candidates.device).view(b, 1))


def mix_images(mask: Tensor, inside: Tensor, outside: Tensor) -> Tensor:
    """``[B, 3, H, W]``: ``inside`` where ``mask`` ``[B, H, W]`` is True, ``outside`` elsewhere."""
    return torch.where(mask.unsqueeze(1), inside, outside)


def mix_labels(mask: Tensor, inside: Tensor, outside: Tensor) -> Tensor:
    """``[B, H, W]``: ``inside`` where ``mask`` is True, ``outside`` elsewhere."""
    return torch.where(mask, inside, outside)


def classmix(
    source_images: Tensor,
    source_labels: Tensor,
    target_images: Tensor,
    target_labels: Tensor,
    num_classes: int,
    generator: torch.Generator,
    class_count: ClassCount = half_class_count,
    relations: Tensor | None = None,
) -> ClassMixResult:
    """Paste a per-sample random subset of source classes onto the target images.

    Args:
        source_images, target_images: ``[B, 3, H, W]`` images (same size).
        source_labels: ``[B, H, W]`` source train ids (255 = ignore).
        target_labels: ``[B, H, W]`` target pseudo-labels.
        num_classes: ``C``.
        generator: source of randomness.
        class_count: maps the number of present classes ``n`` ``[B]`` to the number
            to paste ``[B]``; :func:`half_class_count` (default) or
            :func:`longtail_class_count`, or any per-sample rule.
        relations: optional ``[C, C]`` bool relation matrix; related classes present
            in the same source image are pasted too (so more than ``class_count``
            classes may be pasted).
    """
    check_mix_inputs(source_images, source_labels, target_images, target_labels)
    presence = class_presence(source_labels, num_classes)
    counts = class_count(presence.sum(dim=1))
    selected = select_random_classes(presence, counts, generator)
    if relations is not None:
        selected = add_related_classes(selected, presence, relations)
    mask = class_pixel_mask(source_labels, selected)
    return ClassMixResult(
        images=mix_images(mask, source_images, target_images),
        labels=mix_labels(mask, source_labels.long(), target_labels.long()),
        mask=mask,
        selected=selected,
    )


def check_mix_inputs(
    source_images: Tensor, source_labels: Tensor, target_images: Tensor, target_labels: Tensor
) -> None:
    """Raise ``ValueError`` unless images are ``[B, 3, H, W]`` and labels ``[B, H, W]`` alike."""
    if source_images.dim() != 4 or source_images.shape[1] != 3:
        raise ValueError(f"source images must be [B, 3, H, W], got {tuple(source_images.shape)}")
    if target_images.shape != source_images.shape:
        raise ValueError(
            f"target images {tuple(target_images.shape)} differ from source images "
            f"{tuple(source_images.shape)}"
        )
    expected = (source_images.shape[0], *source_images.shape[2:])
    for name, labels in (("source labels", source_labels), ("target labels", target_labels)):
        if tuple(labels.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(labels.shape)}")
        if labels.is_floating_point():
            raise ValueError(f"{name} must be an integer tensor, got {labels.dtype}")
