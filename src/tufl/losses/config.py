"""Configuration dataclasses of the losses and the factories that build them.

Each unsupervised loss name has its own dataclass (``UNSUPERVISED_LOSS_CONFIGS``),
so a configuration carries only its loss's options (the adaptive-threshold options
of ``nce`` apply with ``threshold: null``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

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
    floor_problems,
    focal_problems,
    probability_problems,
    ratio_problems,
    threshold_problems,
)


@dataclass
class AdaptiveThresholdConfig:
    """The options of TUFL's adaptive thresholds and reduction, shared by :class:`TUFLConfig`
    and :class:`NCEConfig`.

    ``theta0``: initial threshold of every class; ``a``: history weight of the EMA;
    ``b``, ``d``: the order statistic ``floor((N_c + 1) * b * theta_c^d)``;
    ``a_decay``: warm-up ``a_t = 1 - a * exp(-t * a_decay)`` when > 0;
    ``ohem_ratio``: fraction of the largest per-pixel losses kept (1 = off);
    ``class_weights``: one weight per class, or null for all ones;
    ``compile``: run the loss through ``torch.compile``; ``cuda_graphs``: replay its
    training calls as CUDA graphs (CUDA only; see :class:`TUFL`); ``loss_floor``: clamp
    each counted pixel's loss at this floor before OHEM and the mean (0 = off).
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
    # Clamp each counted pixel's loss at this floor before OHEM and the mean, as the authors' release does
    # (1e-8): pixels below it get no gradient, entropy included; 0 = off (the paper's formula).
    loss_floor: float = 1e-8

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return (
            threshold_problems(self.theta0, self.a, self.b, self.d, self.a_decay)
            + ratio_problems("ohem_ratio", self.ohem_ratio)
            + class_weight_problems(self.class_weights)
            + floor_problems(self.loss_floor)
        )


@dataclass
class TUFLConfig(AdaptiveThresholdConfig):
    """TUFL: the threshold options of :class:`AdaptiveThresholdConfig` plus the focal factor.

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
class NCEConfig(AdaptiveThresholdConfig):
    """Neutral cross-entropy: TUFL's per-pixel loss with ``gamma = 0`` (``w_i = 1``).

    By default the authors' baseline: pixels with ``max_c p_c > threshold`` (0.8), the
    25% largest losses, clamped at ``loss_floor``. ``threshold: null`` uses TUFL's
    adaptive thresholds instead (``theta0, a, b, d, a_decay``; ``compile`` and
    ``cuda_graphs`` need them).
    """

    # Keep this fraction of the largest per-pixel losses (authors' baseline: 0.25; 1 = off).
    ohem_ratio: float = 0.25
    # Fixed confidence threshold of the authors' baseline (0.8); null = TUFL's adaptive thresholds.
    # A fixed threshold ignores theta0, a, b, d and a_decay, and runs without compile or cuda_graphs.
    threshold: float | None = 0.8

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        found = super().problems()
        if self.threshold is not None:
            found += probability_problems("threshold", self.threshold)
            found += [
                f"{name}: needs adaptive thresholds (threshold: null); the fixed-threshold loss runs eagerly"
                for name in ("compile", "cuda_graphs")
                if getattr(self, name)
            ]
        return found


@dataclass
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

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return (
            probability_problems("threshold", self.threshold)
            + focal_problems(self.gamma, self.focal_type)
            + ratio_problems("ohem_ratio", self.ohem_ratio)
            + class_weight_problems(self.class_weights)
            + floor_problems(self.loss_floor)
        )


@dataclass
class EntropyConfig:
    """Entropy minimisation of one view (``view``): ``-sum_c lam_c p_c log p_c`` (divided by
    ``log C`` if ``normalize``), on pixels with confidence above ``threshold`` (0 = all),
    keeping the ``ohem_ratio`` largest entropies. The defaults are the authors' baseline;
    ADVENT's form is ``normalize: true, threshold: 0, ohem_ratio: 1``."""

    # Which target view the single-view loss reads.
    view: Literal["weak", "strong"] = "weak"
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
            view_problems(self.view)
            + probability_problems("threshold", self.threshold)
            + ratio_problems("ohem_ratio", self.ohem_ratio)
            + class_weight_problems(self.class_weights)
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
    TUFLConfig | NCEConfig | FixedFocalConfig | EntropyConfig | MaxSquaresConfig | ConfEntropyConfig
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


# Fields of the configs that the losses take as keyword arguments of the same name.
_ADAPTIVE = ("theta0", "a", "b", "d", "a_decay", "ohem_ratio", "class_weights", "compile", "cuda_graphs", "loss_floor")
_FOCAL = ("gamma", "focal_type", "detach_focal")


def _arguments(cfg: object, num_classes: int, names: tuple[str, ...]) -> dict[str, Any]:
    """Keyword arguments ``name=cfg.name``, with the class weights checked against ``num_classes``."""
    values = {name: getattr(cfg, name) for name in names}
    if "class_weights" in values:
        values["class_weights"] = _weights(values["class_weights"], num_classes)
    return values


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
        return TUFL(num_classes, **_arguments(cfg, num_classes, _FOCAL + _ADAPTIVE))
    fixed = ("threshold", "ohem_ratio", "class_weights", "loss_floor")
    if isinstance(cfg, NCEConfig):
        if cfg.threshold is None:
            return neutral_cross_entropy(num_classes, **_arguments(cfg, num_classes, _ADAPTIVE))
        return FixedThresholdFocalLoss(num_classes, gamma=0.0, **_arguments(cfg, num_classes, fixed))
    if isinstance(cfg, FixedFocalConfig):
        return FixedThresholdFocalLoss(num_classes, **_arguments(cfg, num_classes, fixed + _FOCAL))
    if isinstance(cfg, EntropyConfig):
        entropy = ("view", "threshold", "ohem_ratio", "normalize", "class_weights")
        return EntropyMinimization(num_classes, **_arguments(cfg, num_classes, entropy))
    if isinstance(cfg, MaxSquaresConfig):
        return MaxSquares(num_classes, view=cfg.view)
    return ConfidenceEntropy(num_classes, view=cfg.view)


def build_supervised_loss(num_classes: int, cfg: SupervisedConfig | None = None) -> SupervisedCE:
    """Supervised cross-entropy for ``num_classes`` from ``cfg`` (``None``: defaults)."""
    cfg = SupervisedConfig() if cfg is None else cfg
    _checked(cfg, SupervisedConfig, "supervised loss")
    return SupervisedCE(num_classes, class_weights=_weights(cfg.class_weights, num_classes), ohem_ratio=cfg.ohem_ratio)
