"""Unsupervised baselines of PAPER.md, for ablations.

All are called like :class:`tufl.losses.TUFL`: ``loss(weak_logits, strong_logits,
valid=None)`` with ``[B, C, H, W]`` logits and an optional bool ``[B, H, W]`` mask of
informative pixels, and return a scalar computed in float32 (0, not NaN, when no
pixel counts). The single-view losses read the view named by ``view`` (default
``"weak"``, the clean view, as entropy minimisation is usually applied to the
unaugmented target image) and ignore the other one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from tufl.losses.arguments import ConfiguredLoss, check_logit_pair, resolve_config
from tufl.losses.backends import backend_problems
from tufl.losses.selection import masked_mean, pass_fraction, top_fraction_mask
from tufl.losses.tufl import TUFL, AdaptiveThresholdConfig, Backend, ThresholdedFocalLoss, TUFLConfig
from tufl.runtime.checks import (
    class_weight_problems,
    floor_problems,
    focal_problems,
    probability_problems,
    ratio_problems,
)

VIEWS = ("weak", "strong")


def view_problems(view: str) -> list[str]:
    """``view`` must name one of the two views."""
    return [] if view in VIEWS else [f"view: must be one of {VIEWS}, got {view!r}"]


@dataclass(frozen=True)
class SingleViewConfig:
    """A loss of one target view."""

    # Which target view the single-view loss reads.
    view: Literal["weak", "strong"] = "weak"

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return view_problems(self.view)


@dataclass(frozen=True)
class EntropyConfig(SingleViewConfig):
    """Entropy minimisation of one view (``view``): ``-sum_c lam_c p_c log p_c`` (divided by
    ``log C`` if ``normalize``), on pixels with confidence above ``threshold`` (0 = all),
    keeping the ``ohem_ratio`` largest entropies. The defaults are the authors' baseline;
    ADVENT's form is ``normalize: true, threshold: 0, ohem_ratio: 1``."""

    # Minimum confidence max_c p_c of a counted pixel (authors' baseline: 0.8; 0 = all pixels).
    threshold: float = 0.8
    # Keep this fraction of the largest entropies (authors' baseline: 0.25; 1 = off).
    ohem_ratio: float = 0.25
    # Divide the entropy by log C (ADVENT's normalised form); the authors' baseline does not.
    normalize: bool = False
    # Fixed per-class weights lambda_c of the entropy sum (null = all 1).
    class_weights: tuple[float, ...] | None = None

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return (
            super().problems()
            + probability_problems("threshold", self.threshold)
            + ratio_problems("ohem_ratio", self.ohem_ratio)
            + class_weight_problems(self.class_weights)
        )


@dataclass(frozen=True)
class MaxSquaresConfig(SingleViewConfig):
    """Maximum squares loss of one view."""


@dataclass(frozen=True)
class ConfEntropyConfig(SingleViewConfig):
    """Confidence entropy (cross-entropy to the sharpened target ``p^2 / sum p``) of one view."""


def _valid_pixels(per_pixel: Tensor, valid: Tensor | None) -> Tensor:
    """The mask of the pixels that count: ``valid``, or all of them."""
    return torch.ones_like(per_pixel, dtype=torch.bool) if valid is None else valid


class _SingleViewLoss(ConfiguredLoss):
    """A loss of one view's log-probabilities: checks the arguments, picks the view named by
    ``view`` and computes its float32 (float64 for float64 logits) ``log_softmax`` outside
    autocast; subclasses reduce it (:meth:`view_loss`)."""

    Config: ClassVar[type] = SingleViewConfig

    def __init__(self, num_classes: int, cfg: Any | None = None, **overrides: Any) -> None:
        super().__init__(num_classes, cfg, **overrides)
        self.view = self.config.view

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, view={self.view!r}"

    def forward(self, weak_logits: Tensor, strong_logits: Tensor, valid: Tensor | None = None) -> Tensor:
        with torch.autocast(device_type=weak_logits.device.type, enabled=False):
            check_logit_pair(weak_logits, strong_logits, valid, self.num_classes)
            logits = weak_logits if self.view == "weak" else strong_logits
            log_p = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=1)
            return self.view_loss(log_p, valid)

    def view_loss(self, log_p: Tensor, valid: Tensor | None) -> Tensor:
        """The loss of the view's ``[B, C, H, W]`` log-probabilities."""
        raise NotImplementedError


class EntropyMinimization(_SingleViewLoss):
    """Entropy minimisation: mean (class-weighted) Shannon entropy of one view.

    Per pixel ``H = -sum_c lam_c p_c log p_c`` (``lam_c = 1`` without ``class_weights``),
    divided by ``log C`` with ``normalize=True`` (ADVENT's form, in ``[0, 1]`` unweighted);
    pixels count if valid and ``max_c p_c > threshold`` (0 = all); OHEM keeps the
    ``ceil(ohem_ratio * n)`` largest entropies among them. The options are those of
    :class:`EntropyConfig`, whose defaults are the authors' baseline (``normalize=False,
    threshold=0.8, ohem_ratio=0.25``). ``last_pass_fraction``: the (detached) fraction of
    valid pixels above the threshold in the last call.
    """

    Config = EntropyConfig

    def __init__(self, num_classes: int, cfg: EntropyConfig | None = None, **overrides: Any) -> None:
        super().__init__(num_classes, cfg, **overrides)
        self.threshold = float(self.config.threshold)
        self.ohem_ratio = float(self.config.ohem_ratio)
        self.normalize = bool(self.config.normalize)
        self.last_pass_fraction = torch.zeros(())

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, threshold={self.threshold}, ohem_ratio={self.ohem_ratio}, "
            f"normalize={self.normalize}"
        )

    def view_loss(self, log_p: Tensor, valid: Tensor | None) -> Tensor:
        p = log_p.exp()
        p_log_p = p * log_p
        if self.class_weights is not None:
            p_log_p = p_log_p * self.class_weights.to(p.dtype).view(1, -1, 1, 1)
        entropy = -p_log_p.sum(dim=1)
        if self.normalize:
            entropy = entropy / math.log(max(self.num_classes, 2))
        passing = p.detach().amax(dim=1) > self.threshold
        if valid is not None:
            passing &= valid
        self.last_pass_fraction = pass_fraction(passing, valid)  # before OHEM
        keep = top_fraction_mask(entropy, passing, self.ohem_ratio)
        return masked_mean(entropy, keep)


class MaxSquares(_SingleViewLoss):
    """Maximum squares loss: mean over valid pixels of ``-sum_c p_c^2 / 2`` of one view."""

    Config = MaxSquaresConfig

    def view_loss(self, log_p: Tensor, valid: Tensor | None) -> Tensor:
        p = log_p.exp()
        per_pixel = -0.5 * (p * p).sum(dim=1)
        return masked_mean(per_pixel, _valid_pixels(per_pixel, valid))


class ConfidenceEntropy(_SingleViewLoss):
    """Cross-entropy of one view to its sharpened "target distribution".

    With ``p`` the view's prediction and ``f_c = sum_i p_ic`` over the valid pixels
    of the batch, the target is ``t_ic = (p_ic^2 / f_c) / sum_k (p_ik^2 / f_k)``, held
    fixed (stop-gradient); the loss is the mean over valid pixels of
    ``-sum_c t_ic log p_ic / log C``.
    """

    Config = ConfEntropyConfig

    def view_loss(self, log_p: Tensor, valid: Tensor | None) -> Tensor:
        with torch.no_grad():
            p = log_p.exp()
            counted = p if valid is None else p * valid.unsqueeze(1)
            frequency = counted.sum(dim=(0, 2, 3), keepdim=True).clamp(min=torch.finfo(p.dtype).tiny)
            target = p * p / frequency
            target = target / target.sum(dim=1, keepdim=True)
        per_pixel = -(target * log_p).sum(dim=1) / math.log(max(self.num_classes, 2))
        return masked_mean(per_pixel, _valid_pixels(per_pixel, valid))


@dataclass(frozen=True)
class FixedFocalConfig:
    """TUFL's per-pixel loss with one fixed confidence threshold (no adaptation)."""

    # Fixed confidence threshold: pixels with max_c p_c above it count.
    threshold: float = 0.8
    # Focal exponent (0 = neutral cross-entropy).
    gamma: float = 2.0
    # 1: |1 - Q_c|^gamma; 2: |sg(P_c) - Q_c|^gamma (the authors' fixed-threshold loss: 2).
    focal_type: Literal[1, 2] = 2
    # Stop the gradient through the focal factor (authors: no).
    detach_focal: bool = False
    # Keep this fraction of the largest per-pixel losses (1 = off).
    ohem_ratio: float = 1.0
    # Fixed per-class weights lambda_c (null = all 1).
    class_weights: tuple[float, ...] | None = None
    # Clamp each counted pixel's loss at this floor before OHEM and the mean, as the authors' release does
    # (1e-8): pixels below it get no gradient, entropy included; 0 = off (the paper's formula).
    loss_floor: float = 1e-8
    # How the per-pixel terms are computed (see loss.tufl.backend).
    backend: Backend = "auto"

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return (
            probability_problems("threshold", self.threshold)
            + focal_problems(self.gamma, self.focal_type)
            + ratio_problems("ohem_ratio", self.ohem_ratio)
            + class_weight_problems(self.class_weights)
            + floor_problems(self.loss_floor)
            + backend_problems(self.backend)
        )


class FixedThresholdFocalLoss(ThresholdedFocalLoss):
    """TUFL's per-pixel loss on pixels with ``m_i > threshold`` (one fixed threshold, no adaptation).

    ``FixedThresholdFocalLoss(num_classes, cfg=None, **overrides)`` with the fields of
    :class:`FixedFocalConfig`; called and reduced like :class:`tufl.losses.TUFL` otherwise
    (OHEM, class weights, ``loss_floor``, ``last_pass_fraction``). With ``gamma = 0,
    threshold = 0.8, ohem_ratio = 0.25, loss_floor = 1e-8`` it is the authors'
    cross-entropy baseline.
    """

    Config: ClassVar[type] = FixedFocalConfig

    def __init__(self, num_classes: int, cfg: FixedFocalConfig | None = None, **overrides: Any) -> None:
        super().__init__(num_classes, cfg, **overrides)
        self.threshold = float(self.config.threshold)
        self.register_buffer("thresholds", torch.full((num_classes,), self.threshold), persistent=False)

    def threshold_repr(self) -> str:
        return f"threshold={self.threshold}"


@dataclass(frozen=True)
class NCEConfig(AdaptiveThresholdConfig):
    """Neutral cross-entropy: TUFL's per-pixel loss with ``gamma = 0`` (``w_i = 1``).

    By default the authors' baseline: pixels with ``max_c p_c > threshold`` (0.8), the
    25% largest losses, clamped at ``loss_floor``. ``threshold: null`` uses TUFL's
    adaptive thresholds instead (``theta0, a, b, d, a_decay``).
    """

    # Keep this fraction of the largest per-pixel losses (authors' baseline: 0.25; 1 = off).
    ohem_ratio: float = 0.25
    # Fixed confidence threshold of the authors' baseline (0.8); null = TUFL's adaptive thresholds.
    # A fixed threshold ignores theta0, a, b, d and a_decay.
    threshold: float | None = 0.8

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        found = super().problems()
        if self.threshold is not None:
            found += probability_problems("threshold", self.threshold)
        return found


class NeutralCrossEntropy:
    """The neutral cross-entropy baseline (``loss.unsupervised: nce``): TUFL's loss with ``gamma = 0``,
    on a fixed threshold (:class:`FixedThresholdFocalLoss`) or TUFL's adaptive ones (:class:`TUFL`)."""

    Config: ClassVar[type] = NCEConfig

    @classmethod
    def from_config(cls, num_classes: int, cfg: NCEConfig) -> nn.Module:
        """The loss of a ``loss.nce`` config section."""
        cfg = resolve_config(cls.__name__, NCEConfig, num_classes, cfg, {})
        shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(AdaptiveThresholdConfig)}
        if cfg.threshold is None:
            return TUFL(num_classes, TUFLConfig(gamma=0.0, **shared))
        fixed = {name: shared[name] for name in ("ohem_ratio", "class_weights", "loss_floor", "backend")}
        # focal_type 1 and no detaching: with gamma = 0 the focal factor is 1 either way.
        return FixedThresholdFocalLoss(num_classes, FixedFocalConfig(threshold=cfg.threshold, gamma=0.0, focal_type=1,
                                                                     **fixed))


def neutral_cross_entropy(num_classes: int, cfg: TUFLConfig | None = None, **overrides: Any) -> TUFL:
    """Neutral cross-entropy with TUFL's adaptive thresholds: TUFL with ``gamma = 0`` (``w_i = 1``).

    ``cfg`` and ``overrides`` as for :class:`TUFL` (``gamma`` is fixed). The authors' own
    baseline uses one fixed threshold instead: :class:`FixedThresholdFocalLoss` with
    ``gamma = 0``.
    """
    return TUFL(num_classes, cfg, **overrides, gamma=0.0)


__all__ = [
    "ConfEntropyConfig",
    "ConfidenceEntropy",
    "EntropyConfig",
    "EntropyMinimization",
    "FixedFocalConfig",
    "FixedThresholdFocalLoss",
    "MaxSquares",
    "MaxSquaresConfig",
    "NCEConfig",
    "NeutralCrossEntropy",
    "neutral_cross_entropy",
]
