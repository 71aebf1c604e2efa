"""Soft dual mixing ("dual_soft"): one source template blended into source and target.

A third source image, the *template*, provides the mask ``M``: ``ceil(n / 2)`` of
the ``n`` classes present in it, chosen uniformly, plus instances of long-tail
classes fetched from *other* source images and pasted onto the template first (the
mixer does that with its long-tail paster; :func:`dual_soft_mix` receives the
pasted template and the mask of the pasted pixels). Inside ``M`` the template is
blended with weight ``alpha`` into both images:

    x_src' = M * (alpha * x_tpl + (1 - alpha) * x_s) + (1 - M) * x_s
    x_tar' = M * (alpha * x_tpl + (1 - alpha) * x_t) + (1 - M) * x_t

and the mixed labels take the template label inside ``M``. The losses weigh the
mixed label by ``alpha`` and the label of the image underneath by ``1 - alpha``:

    L_src = alpha * CE(y_src') + (1 - alpha) * CE(y_s)
    L_tar = w * (alpha * CE(y_tar') + (1 - alpha) * CE(yhat_t))

(outside ``M`` both labels agree, so this is the plain cross-entropy there).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from tufl.data.labels import IGNORE_INDEX, class_names, is_cityscapes_set
from tufl.mixing.classmix import (
    check_mix_inputs,
    class_pixel_mask,
    class_presence,
    half_class_count,
    mix_labels,
    select_random_classes,
)
from tufl.mixing.relations import add_related_classes
from tufl.mixing.pixel_weights import pixel_cross_entropy

# paste(images, labels, mask) -> (images, labels, mask): instances pasted onto templates.
TemplatePaste = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]

# Long-tail classes of the template, per benchmark (by class-set size).
GTA5_LONGTAIL_CLASSES: tuple[str, ...] = ("rider", "bus", "train", "motorcycle", "bicycle")
SYNTHIA_LONGTAIL_CLASSES: tuple[str, ...] = ("wall", "fence", "traffic light", "bus")


def default_dual_longtail_classes(num_classes: int) -> tuple[str, ...]:
    """The long-tail classes dual_soft pastes onto its templates (the authors' lists).

    19 classes (GTA5): rider, bus, train, motorcycle, bicycle. 16 classes (SYNTHIA):
    wall, fence, traffic light, bus. 13 classes (Cityscapes -> Cross-City): all 13.
    Another count (a class definition file's): all classes, as ``class_<i>``.
    """
    if not is_cityscapes_set(num_classes):
        return _set_names(num_classes)
    if num_classes == 13:
        return class_names(13)
    return GTA5_LONGTAIL_CLASSES if num_classes == 19 else SYNTHIA_LONGTAIL_CLASSES


def _set_names(num_classes: int) -> tuple[str, ...]:
    if is_cityscapes_set(num_classes):
        return class_names(num_classes)
    return tuple(f"class_{i}" for i in range(num_classes))


def class_vector(names: tuple[str, ...], num_classes: int) -> Tensor:
    """``[C]`` bool vector of the named classes (``ValueError`` for a name not in the set)."""
    all_names = _set_names(num_classes)
    vector = torch.zeros(num_classes, dtype=torch.bool)
    for name in names:
        if name not in all_names:
            raise ValueError(f"class {name!r} is not one of the {num_classes} classes {all_names}")
        vector[all_names.index(name)] = True
    return vector


class DualSoftMix(NamedTuple):
    """Output of :func:`dual_soft_mix`."""

    source_images: Tensor  # [B, 3, H, W] template blended into the source images
    source_labels: Tensor  # [B, H, W] template label inside M, source label elsewhere
    target_images: Tensor  # [B, 3, H, W] template blended into the target images
    target_labels: Tensor  # [B, H, W] template label inside M, pseudo-label elsewhere
    mask: Tensor  # [B, H, W] bool, M
    selected: Tensor  # [B, C] bool, the template classes forming M (besides pasted instances)


def select_template_classes(
    template_labels: Tensor,
    num_classes: int,
    generator: torch.Generator,
    relations: Tensor | None = None,
) -> Tensor:
    """``[B, C]`` bool: the template classes forming ``M``, per sample.

    ``ceil(n / 2)`` of the ``n`` present classes, chosen uniformly, plus, when
    ``relations`` is given, the present classes related to a chosen one.
    """
    presence = class_presence(template_labels, num_classes)
    selected = select_random_classes(presence, half_class_count(presence.sum(dim=1)), generator)
    if relations is not None:
        selected = add_related_classes(selected, presence, relations)
    return selected


def blend_by_mask(mask: Tensor, template: Tensor, base: Tensor, alpha: float) -> Tensor:
    """``alpha * template + (1 - alpha) * base`` inside ``mask``, ``base`` exactly elsewhere.

    The result has the dtype of ``base``; uint8 blends are rounded.
    """
    blended = alpha * template.float() + (1.0 - alpha) * base.float()
    if not base.is_floating_point():
        blended = blended.round().clamp(0, 255)
    return torch.where(mask.unsqueeze(1), blended.to(base.dtype), base)


def dual_soft_mix(
    source_images: Tensor,
    source_labels: Tensor,
    target_images: Tensor,
    pseudo_labels: Tensor,
    template_images: Tensor,
    template_labels: Tensor,
    num_classes: int,
    generator: torch.Generator,
    alpha: float = 0.8,
    relations: Tensor | None = None,
    paste: TemplatePaste | None = None,
) -> DualSoftMix:
    """Blend the template's selected classes into the source and the target images.

    Args:
        source_images, target_images, template_images: ``[B, 3, H, W]``, same size.
        source_labels, pseudo_labels, template_labels: ``[B, H, W]`` train ids.
        num_classes: ``C``.
        generator: source of randomness.
        alpha: blending weight of the template.
        relations: optional ``[C, C]`` bool class relations for the template classes.
        paste: optional ``paste(images, labels, mask) -> (images, labels, mask)``
            applied to the template once its classes are selected (the mixer's
            long-tail instances); what it adds to the mask joins ``M``.
    """
    check_mix_inputs(source_images, source_labels, target_images, pseudo_labels)
    if template_images.shape != source_images.shape or template_labels.shape != source_labels.shape:
        raise ValueError(
            f"template images {tuple(template_images.shape)} and labels "
            f"{tuple(template_labels.shape)} must match the source batch "
            f"{tuple(source_images.shape)} / {tuple(source_labels.shape)}"
        )
    if template_labels.is_floating_point():
        raise ValueError(f"template labels must be an integer tensor, got {template_labels.dtype}")
    selected = select_template_classes(template_labels, num_classes, generator, relations=relations)
    mask = class_pixel_mask(template_labels, selected)
    template_labels = template_labels.long()
    if paste is not None:
        template_images, template_labels, mask = paste(template_images, template_labels, mask)
    return DualSoftMix(
        source_images=blend_by_mask(mask, template_images, source_images, alpha),
        source_labels=mix_labels(mask, template_labels, source_labels.long()),
        target_images=blend_by_mask(mask, template_images, target_images, alpha),
        target_labels=mix_labels(mask, template_labels, pseudo_labels.long()),
        mask=mask,
        selected=selected,
    )


def soft_mix_loss(
    logits: Tensor,
    mixed_labels: Tensor,
    original_labels: Tensor,
    alpha: float,
    weights: Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """``sum_i w_i * (alpha * CE_i(mixed) + (1 - alpha) * CE_i(original)) / N``.

    A term whose label is ``ignore_index`` is 0; ``N`` counts the pixels where at
    least one of the two labels is valid (with ``alpha == 1`` this is
    :func:`tufl.mixing.pixel_weights.mixed_loss`). ``weights`` default to 1. Returns 0
    (with a graph) when every pixel is ignored.
    """
    ce = alpha * pixel_cross_entropy(logits, mixed_labels, ignore_index)
    ce = ce + (1.0 - alpha) * pixel_cross_entropy(logits, original_labels, ignore_index)
    if weights is not None:
        ce = ce * weights
    valid = ((mixed_labels != ignore_index) | (original_labels != ignore_index)).sum()
    return ce.sum() / valid.clamp(min=1)


def dual_soft_losses(
    source_logits: Tensor,
    target_logits: Tensor,
    mix: DualSoftMix,
    source_labels: Tensor,
    pseudo_labels: Tensor,
    target_weights: Tensor,
    alpha: float = 0.8,
    source_weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``(L_src, L_tar)`` of a :class:`DualSoftMix` from the logits of its two images.

    ``target_weights`` ``[B, H, W]`` are the pixel weights of the target mix (see
    :func:`tufl.mixing.pixel_weights.pixel_weights`); ``source_weights`` default to 1.
    """
    loss_source = soft_mix_loss(source_logits, mix.source_labels, source_labels, alpha, source_weights)
    loss_target = soft_mix_loss(target_logits, mix.target_labels, pseudo_labels, alpha, target_weights)
    return loss_source, loss_target
