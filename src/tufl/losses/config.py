"""Configuration dataclasses of the losses and the factories that build them.

Each unsupervised loss name has its own dataclass (``UNSUPERVISED_LOSS_CONFIGS``),
so a configuration never carries an option its loss would ignore.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from tufl.losses.baselines import (
    ConfidenceEntropy,
    EntropyMinimization,
    FixedThresholdFocalLoss,
    MaxSquares,
    neutral_cross_entropy,
    view_problems,
)
from tufl.losses.supervised import SupervisedCE
from tufl.losses.tufl import TUFL
from tufl.losses.validation import (
    class_weight_problems,
    focal_problems,
    probability_problems,
    ratio_problems,
    threshold_problems,
)


@dataclass
class NCEConfig:
    """Neutral cross-entropy (TUFL with ``gamma = 0``) and the threshold options TUFL shares.

    ``theta0``: initial threshold of every class; ``a``: history weight of the EMA;
    ``b``, ``d``: the order statistic ``floor((N_c + 1) * b * theta_c^d)``;
    ``a_decay``: warm-up ``a_t = 1 - a * exp(-t * a_decay)`` when > 0;
    ``ohem_ratio``: fraction of the largest per-pixel losses kept (1 = off);
    ``class_weights``: one weight per class, or null for all ones;
    ``compile``: run the loss through ``torch.compile``; ``cuda_graphs``: replay its
    training calls as CUDA graphs (CUDA only; see :class:`TUFL`).
    """

    # Initial per-class threshold.
    theta0: float = 0.8
    # History weight of the threshold update theta <- a*theta + (1-a)*psi.
    a: float = 0.9
    # psi_c = sorted confidences[floor((N_c + 1) * b * theta_c^d)] (authors' scripts: 0.8).
    b: float = 0.8
    # Exponent d of that order statistic.
    d: float = 8.0
    # Warm-up of the history weight a_t = 1 - a*exp(-t*a_decay); 0 = off.
    a_decay: float = 0.0
    # Keep this fraction of the largest per-pixel losses (1 = off).
    ohem_ratio: float = 1.0
    # Fixed per-class weights lambda_c (null = all 1).
    class_weights: tuple[float, ...] | None = None
    # Run the loss through torch.compile: far fewer kernel launches on a GPU (compiles at the first step).
    compile: bool = False
    # Replay the loss's training calls as CUDA graphs: one launch per pass (CUDA only; fastest on GPUs).
    cuda_graphs: bool = False

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return (
            threshold_problems(self.theta0, self.a, self.b, self.d, self.a_decay)
            + ratio_problems("ohem_ratio", self.ohem_ratio)
            + class_weight_problems(self.class_weights)
        )


@dataclass
class TUFLConfig(NCEConfig):
    """TUFL: the threshold options of :class:`NCEConfig` plus the focal factor.

    ``gamma``: focal exponent; ``focal_type``: 1 for ``|1 - Q|^gamma``, 2 for
    ``|sg(P) - Q|^gamma``; ``detach_focal``: stop the gradient through the focal factor.
    """

    # Focal exponent (0 = neutral cross-entropy).
    gamma: float = 2.0
    # 1: |1 - Q_c|^gamma; 2: |sg(P_c) - Q_c|^gamma.
    focal_type: Literal[1, 2] = 1
    # Stop the gradient through the focal factor (authors: no).
    detach_focal: bool = False

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return super().problems() + focal_problems(self.gamma, self.focal_type)


@dataclass
class FixedFocalConfig:
    """TUFL's per-pixel loss with one fixed confidence threshold (no adaptation)."""

    # Fixed confidence threshold (fixed_focal) / minimum confidence (entropy; 0 = all pixels).
    threshold: float = 0.8
    # Focal exponent (0 = neutral cross-entropy).
    gamma: float = 2.0
    # 1: |1 - Q_c|^gamma; 2: |sg(P_c) - Q_c|^gamma.
    focal_type: Literal[1, 2] = 1
    # Stop the gradient through the focal factor (authors: no).
    detach_focal: bool = False
    # Keep this fraction of the largest per-pixel losses (1 = off).
    ohem_ratio: float = 1.0
    # Fixed per-class weights lambda_c (null = all 1).
    class_weights: tuple[float, ...] | None = None

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return (
            probability_problems("threshold", self.threshold)
            + focal_problems(self.gamma, self.focal_type)
            + ratio_problems("ohem_ratio", self.ohem_ratio)
            + class_weight_problems(self.class_weights)
        )


@dataclass
class EntropyConfig:
    """Entropy minimisation of one view (``view``), on pixels with confidence above
    ``threshold`` (0 = all), keeping the ``ohem_ratio`` largest entropies."""

    # Which target view the single-view loss reads.
    view: Literal["weak", "strong"] = "weak"
    # Fixed confidence threshold (fixed_focal) / minimum confidence (entropy; 0 = all pixels).
    threshold: float = 0.0
    # Keep this fraction of the largest per-pixel losses (1 = off).
    ohem_ratio: float = 1.0

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return (
            view_problems(self.view)
            + probability_problems("threshold", self.threshold)
            + ratio_problems("ohem_ratio", self.ohem_ratio)
        )


@dataclass
class MaxSquaresConfig:
    """Maximum squares loss of one view."""

    # Which target view the single-view loss reads.
    view: Literal["weak", "strong"] = "weak"

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return view_problems(self.view)


@dataclass
class ConfEntropyConfig:
    """Confidence entropy (cross-entropy to the sharpened target ``p^2 / sum p``) of one view."""

    # Which target view the single-view loss reads.
    view: Literal["weak", "strong"] = "weak"

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return view_problems(self.view)


@dataclass
class SupervisedConfig:
    """Supervised cross-entropy: optional class weights (null = all ones) and OHEM ratio (1 = off)."""

    # Fixed per-class weights lambda_c (null = all 1).
    class_weights: tuple[float, ...] | None = None
    # Keep this fraction of the largest per-pixel losses (1 = off).
    ohem_ratio: float = 1.0

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return class_weight_problems(self.class_weights) + ratio_problems("ohem_ratio", self.ohem_ratio)


UnsupervisedLossConfig = (
    NCEConfig | TUFLConfig | FixedFocalConfig | EntropyConfig | MaxSquaresConfig | ConfEntropyConfig
)

UNSUPERVISED_LOSS_CONFIGS: dict[str, type] = {
    "tufl": TUFLConfig,
    "nce": NCEConfig,
    "fixed_focal": FixedFocalConfig,
    "entropy": EntropyConfig,
    "max_squares": MaxSquaresConfig,
    "conf_entropy": ConfEntropyConfig,
}


def _checked(cfg: object, expected: type, what: str) -> None:
    if type(cfg) is not expected:
        raise TypeError(f"{what} needs a {expected.__name__}, got {type(cfg).__name__}")
    problems = cfg.problems()  # type: ignore[attr-defined]
    if problems:
        raise ValueError(f"{what}: " + "; ".join(problems))


def _weights(class_weights: tuple[float, ...] | None, num_classes: int) -> tuple[float, ...] | None:
    if class_weights is not None and len(class_weights) != num_classes:
        raise ValueError(f"class_weights: expected {num_classes} weights (one per class), got {len(class_weights)}")
    return class_weights


def build_unsupervised_loss(name: str, num_classes: int, cfg: UnsupervisedLossConfig | None = None) -> nn.Module:
    """The unsupervised loss ``name`` (a key of ``UNSUPERVISED_LOSS_CONFIGS``) for ``num_classes``.

    ``cfg`` must be the dataclass registered for ``name`` (``None``: its defaults).
    Every returned module is called as ``loss(weak_logits, strong_logits, valid=None)``.
    """
    if name not in UNSUPERVISED_LOSS_CONFIGS:
        raise ValueError(f"unknown unsupervised loss {name!r}; choose one of {sorted(UNSUPERVISED_LOSS_CONFIGS)}")
    expected = UNSUPERVISED_LOSS_CONFIGS[name]
    cfg = expected() if cfg is None else cfg
    _checked(cfg, expected, f"unsupervised loss {name!r}")
    if isinstance(cfg, TUFLConfig):
        return TUFL(
            num_classes,
            gamma=cfg.gamma,
            focal_type=cfg.focal_type,
            theta0=cfg.theta0,
            a=cfg.a,
            b=cfg.b,
            d=cfg.d,
            a_decay=cfg.a_decay,
            ohem_ratio=cfg.ohem_ratio,
            class_weights=_weights(cfg.class_weights, num_classes),
            detach_focal=cfg.detach_focal,
            compile=cfg.compile,
            cuda_graphs=cfg.cuda_graphs,
        )
    if isinstance(cfg, NCEConfig):
        return neutral_cross_entropy(
            num_classes,
            theta0=cfg.theta0,
            a=cfg.a,
            b=cfg.b,
            d=cfg.d,
            a_decay=cfg.a_decay,
            ohem_ratio=cfg.ohem_ratio,
            class_weights=_weights(cfg.class_weights, num_classes),
            compile=cfg.compile,
            cuda_graphs=cfg.cuda_graphs,
        )
    if isinstance(cfg, FixedFocalConfig):
        return FixedThresholdFocalLoss(
            num_classes,
            threshold=cfg.threshold,
            gamma=cfg.gamma,
            focal_type=cfg.focal_type,
            ohem_ratio=cfg.ohem_ratio,
            class_weights=_weights(cfg.class_weights, num_classes),
            detach_focal=cfg.detach_focal,
        )
    if isinstance(cfg, EntropyConfig):
        return EntropyMinimization(num_classes, view=cfg.view, threshold=cfg.threshold, ohem_ratio=cfg.ohem_ratio)
    if isinstance(cfg, MaxSquaresConfig):
        return MaxSquares(num_classes, view=cfg.view)
    return ConfidenceEntropy(num_classes, view=cfg.view)


def build_supervised_loss(num_classes: int, cfg: SupervisedConfig | None = None) -> SupervisedCE:
    """Supervised cross-entropy for ``num_classes`` from ``cfg`` (``None``: defaults)."""
    cfg = SupervisedConfig() if cfg is None else cfg
    _checked(cfg, SupervisedConfig, "supervised loss")
    return SupervisedCE(num_classes, class_weights=_weights(cfg.class_weights, num_classes), ohem_ratio=cfg.ohem_ratio)
