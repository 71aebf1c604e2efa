"""Cross-domain image mixing (CIM) of one training batch, as the trainer calls it.

``single`` mode: per-sample ClassMix source -> target, plus long-tail instance
pasting on a random ``p_longtail`` share of the samples; one mixed view.
``dual_soft`` mode: a source template, with long-tail instances from other
source images pasted onto it, blended into both the source and the target
images; two mixed views. Every view carries its pixel weights and
computes its own loss from the student's logits, so the trainer does::

    result = mixer(x_s, y_s, x_t, yhat_t, conf_t, generator, thresholds=theta)
    loss_mix = sum(view.loss(student(view.images).main) for view in result.views())

and scales it by ``lambda_mix``. The photometric transform ``T`` (owned by the
data package) is applied to the single-mode mixed image after mixing, and to
the dual_soft views only with ``dual_photometric`` (the authors do not), to the single-mode
image unless ``single_photometric`` is off (the authors apply it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from tufl.mixing.classmix import (
    check_mix_inputs,
    classmix,
    half_class_count,
    longtail_class_count,
    select_random_classes,
)
from tufl.mixing.config import MixConfig
from tufl.runtime.draws import uniform
from tufl.mixing.dual_soft import (
    class_vector,
    default_dual_longtail_classes,
    dual_soft_mix,
    soft_mix_loss,
)
from tufl.mixing.longtail import InstanceFetch, LongTailPaster, LongTailStats
from tufl.mixing.relations import relation_matrix
from tufl.mixing.pixel_weights import confident_fraction, mixed_loss, pixel_weights

Photometric = Callable[[Tensor, torch.Generator], Tensor]


@dataclass(frozen=True)
class MixedView:
    """One mixed batch and what its loss needs.

    ``loss(logits)`` is :func:`~tufl.mixing.pixel_weights.mixed_loss` when
    ``original_labels`` is None, else :func:`~tufl.mixing.dual_soft.soft_mix_loss`
    with weight ``alpha`` on ``labels`` and ``1 - alpha`` on ``original_labels``.
    """

    images: Tensor  # [B, 3, H, W] mixed images, after the photometric transform
    labels: Tensor  # [B, H, W] int64 mixed labels (255 = ignore)
    weights: Tensor  # [B, H, W] float32 pixel weights
    mask: Tensor  # [B, H, W] bool, pixels with ground-truth (pasted source) labels
    original_labels: Tensor | None = None  # dual_soft: labels of the image blended into
    alpha: float = 1.0

    def loss(self, logits: Tensor) -> Tensor:
        """Weighted cross-entropy of ``logits`` ``[B, C, H, W]`` against this view."""
        if self.original_labels is None:
            return mixed_loss(logits, self.labels, self.weights)
        return soft_mix_loss(logits, self.labels, self.original_labels, self.alpha, self.weights)


@dataclass(frozen=True)
class MixStats:
    """Quantities to log. Tensors stay on the device (read them when logging)."""

    target_weight: Tensor  # [B] weight of the target pixels of each sample
    pasted_fraction: Tensor  # [B] fraction of pixels with ground-truth labels (target view)
    longtail: LongTailStats  # long-tail pasting counters (all zero in dual_soft mode)


@dataclass(frozen=True)
class MixResult:
    """Mixed views of one batch: ``target`` always, ``source`` in dual_soft mode."""

    target: MixedView
    source: MixedView | None
    stats: MixStats

    def views(self) -> tuple[MixedView, ...]:
        """The views to train on: ``(target,)`` or ``(source, target)``."""
        return (self.target,) if self.source is None else (self.source, self.target)


def to_uint8(images: Tensor) -> Tensor:
    """Images in ``[0, 255]`` as uint8 (float values rounded and clamped)."""
    if images.dtype == torch.uint8:
        return images
    return images.round().clamp(0, 255).to(torch.uint8)


def per_sample_class_count(longtail: Tensor, num_present: Tensor) -> Tensor:
    """ClassMix class counts ``[B]``: the long-tail rule where ``longtail`` (bool ``[B]``), else half."""
    return torch.where(longtail, longtail_class_count(num_present), half_class_count(num_present))


class CrossDomainMixer:
    """Mixes a stage-two batch according to a :class:`MixConfig`.

    Args:
        config: the mixing options (validated with ``config.problems()``).
        num_classes: ``C`` (19, 16 or 13).
        fetch: loads a random source image containing a class; required when
            long-tail instances are pasted (see :meth:`pastes_instances`).
        photometric: ``T(images_uint8 [B, 3, H, W], generator) -> images`` applied to
            the mixed images (dual_soft: only with ``dual_photometric``); None = no
            transform (the mixed images then keep the dtype of the inputs).
        available_classes: optional ``[C]`` bool, the classes the long-tail sampler may
            draw (e.g. those with at least one image in the source class index).

    Randomness comes only from the generator passed to each call; see
    :mod:`tufl.runtime.draws` for where numbers are drawn.
    """

    def __init__(
        self,
        config: MixConfig,
        num_classes: int,
        fetch: InstanceFetch | None = None,
        photometric: Photometric | None = None,
        available_classes: Tensor | None = None,
    ) -> None:
        problems = config.problems()
        if problems:
            raise ValueError("invalid mixing config: " + "; ".join(problems))
        self.config = config
        self.num_classes = num_classes
        self.photometric = photometric
        table = relation_matrix(num_classes, config.relation_table)
        self._relations = table if config.class_relations else None
        self._relations_on: dict[torch.device, Tensor] = {}
        self._paster: LongTailPaster | None = None
        self._dual_longtail: Tensor | None = None
        if self.pastes_instances(config):
            if fetch is None:
                raise ValueError(
                    "long-tail pasting (p_longtail > 0, or dual_soft with dual_longtail_count > 0) "
                    "needs a fetch callable to load instances"
                )
            self._paster = LongTailPaster(
                fetch,
                num_classes,
                k_choices=tuple(config.longtail_k),
                fetch_attempts=1 + config.max_fetch_retries,
                relations=table if config.longtail_relations else None,
                available=available_classes,
            )
        if config.mode == "dual_soft":
            names = tuple(config.dual_longtail_classes) or default_dual_longtail_classes(num_classes)
            try:
                self._dual_longtail = class_vector(names, num_classes)
            except ValueError as error:
                raise ValueError(f"dual_longtail_classes: {error}") from None
            if available_classes is not None:
                self._dual_longtail &= available_classes.cpu()

    @staticmethod
    def pastes_instances(config: MixConfig) -> bool:
        """Whether ``config`` pastes long-tail instances (and so needs a fetch callable)."""
        if config.mode == "dual_soft":
            return config.dual_longtail_count > 0
        return config.p_longtail > 0

    def _relations_for(self, device: torch.device) -> Tensor | None:
        if self._relations is None:
            return None
        if device not in self._relations_on:
            self._relations_on[device] = self._relations.to(device)
        return self._relations_on[device]

    def _finish(self, images: Tensor, generator: torch.Generator) -> Tensor:
        if self.photometric is None:
            return images
        return self.photometric(to_uint8(images), generator)

    def _weights(self, mask: Tensor, target_weight: Tensor) -> Tensor:
        return pixel_weights(mask, target_weight, self.config.boundary_band, self.config.boundary_weight)

    def __call__(
        self,
        source_images: Tensor,
        source_labels: Tensor,
        target_images: Tensor,
        pseudo_labels: Tensor,
        confidences: Tensor,
        generator: torch.Generator,
        thresholds: Tensor | None = None,
        template_images: Tensor | None = None,
        template_labels: Tensor | None = None,
    ) -> MixResult:
        """Mix one batch.

        Args:
            source_images, target_images: ``[B, 3, H, W]`` in ``[0, 255]`` (target: the
                weak view the pseudo-labels were predicted on).
            source_labels: ``[B, H, W]`` source train ids (255 = ignore).
            pseudo_labels: ``[B, H, W]`` hard pseudo-labels of the target images.
            confidences: ``[B, H, W]`` pseudo-label confidences (max softmax).
            generator: the step's generator.
            thresholds: ``[C]`` current TUFL thresholds (single mode with long-tail pasting).
            template_images, template_labels: a third source batch (dual_soft mode only).
        """
        check_mix_inputs(source_images, source_labels, target_images, pseudo_labels)
        if confidences.shape != pseudo_labels.shape:
            raise ValueError(
                f"confidences {tuple(confidences.shape)} must match pseudo-labels "
                f"{tuple(pseudo_labels.shape)}"
            )
        target_weight = confident_fraction(confidences, self.config.confidence_threshold)
        if self.config.mode == "dual_soft":
            return self._dual_soft(
                source_images, source_labels, target_images, pseudo_labels,
                template_images, template_labels, target_weight, generator,
            )
        if template_images is not None or template_labels is not None:
            raise ValueError("template images are only used in dual_soft mode")
        return self._single(
            source_images, source_labels, target_images, pseudo_labels,
            target_weight, thresholds, generator,
        )

    def _single(
        self,
        source_images: Tensor,
        source_labels: Tensor,
        target_images: Tensor,
        pseudo_labels: Tensor,
        target_weight: Tensor,
        thresholds: Tensor | None,
        generator: torch.Generator,
    ) -> MixResult:
        batch = source_images.shape[0]
        device = source_images.device
        longtail = [False] * batch
        count_rule = half_class_count
        if self._paster is not None:
            if thresholds is None:
                raise ValueError("long-tail pasting (p_longtail > 0) needs the current thresholds")
            if thresholds.shape != (self.num_classes,):
                raise ValueError(
                    f"thresholds must be [{self.num_classes}], got {tuple(thresholds.shape)}"
                )
            draws = uniform((batch,), generator, generator.device) < self.config.p_longtail
            longtail = draws.tolist()
            count_rule = functools.partial(per_sample_class_count, draws.to(device, non_blocking=True))

        mix = classmix(
            source_images, source_labels, target_images, pseudo_labels,
            self.num_classes, generator, count_rule, self._relations_for(device),
        )
        images, labels, mask = mix.images, mix.labels, mix.mask
        stats = LongTailStats()
        if self._paster is not None:
            images, labels, mask, stats = self._paster(
                images, labels, mask, longtail, thresholds, generator
            )
        view = MixedView(
            images=self._finish(images, generator) if self.config.single_photometric else images,
            labels=labels,
            weights=self._weights(mask, target_weight),
            mask=mask,
        )
        return MixResult(
            target=view,
            source=None,
            stats=MixStats(target_weight, mask.flatten(1).float().mean(dim=1), stats),
        )

    def _dual_soft(
        self,
        source_images: Tensor,
        source_labels: Tensor,
        target_images: Tensor,
        pseudo_labels: Tensor,
        template_images: Tensor | None,
        template_labels: Tensor | None,
        target_weight: Tensor,
        generator: torch.Generator,
    ) -> MixResult:
        if template_images is None or template_labels is None:
            raise ValueError("dual_soft mode needs template_images and template_labels")
        assert self._dual_longtail is not None
        alpha = self.config.dual_alpha
        stats = [LongTailStats()]

        def paste_longtail(images: Tensor, labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            if self._paster is None:
                return images, labels, mask
            classes = self._dual_classes(images.shape[0], generator)
            images, labels, mask, stats[0] = self._paster.paste(images, labels, mask, classes, generator)
            return images, labels, mask

        mix = dual_soft_mix(
            source_images, source_labels, target_images, pseudo_labels,
            template_images, template_labels, self.num_classes, generator, alpha,
            self._relations_for(source_images.device), paste_longtail,
        )
        finish = self._finish if self.config.dual_photometric else (lambda images, _: images)
        source_view = MixedView(
            images=finish(mix.source_images, generator),
            labels=mix.source_labels,
            weights=self._weights(mix.mask, torch.ones_like(target_weight)),
            mask=mix.mask,
            original_labels=source_labels.long(),
            alpha=alpha,
        )
        target_view = MixedView(
            images=finish(mix.target_images, generator),
            labels=mix.target_labels,
            weights=self._weights(mix.mask, target_weight),
            mask=mix.mask,
            original_labels=pseudo_labels.long(),
            alpha=alpha,
        )
        return MixResult(
            target=target_view,
            source=source_view,
            stats=MixStats(target_weight, mix.mask.flatten(1).float().mean(dim=1), stats[0]),
        )

    def _dual_classes(self, batch: int, generator: torch.Generator) -> list[list[int]]:
        """Per template, ``dual_longtail_count`` distinct long-tail classes in random order."""
        assert self._dual_longtail is not None
        candidates = self._dual_longtail.view(1, -1).expand(batch, -1)
        counts = torch.full((batch,), self.config.dual_longtail_count, dtype=torch.long)
        chosen = select_random_classes(candidates, counts, generator)
        order = uniform(chosen.shape, generator, chosen.device).argsort(dim=1)
        return [[c for c in row if picked[c]] for row, picked in zip(order.tolist(), chosen.tolist())]
