"""The registry of unsupervised losses, the ``loss`` config section derived from it, and the factories.

Adding an unsupervised loss takes one class and one entry of :data:`UNSUPERVISED_LOSSES`:
the class declares its config dataclass as ``Config`` (fields with a comment line
above each, which docs/config.md shows) and builds itself with
``from_config(num_classes, cfg)``; the ``loss`` section then has a sub-section of
that name and ``loss.unsupervised`` accepts it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from torch import nn

from tufl.losses.baselines import (
    ConfEntropyConfig,
    ConfidenceEntropy,
    EntropyConfig,
    EntropyMinimization,
    FixedFocalConfig,
    FixedThresholdFocalLoss,
    MaxSquares,
    MaxSquaresConfig,
    NCEConfig,
    NeutralCrossEntropy,
)
from tufl.losses.supervised import SupervisedCE, SupervisedConfig
from tufl.losses.tufl import TUFL, AdaptiveThresholdConfig, TUFLConfig


class UnsupervisedLoss(Protocol):
    """What a registry entry provides."""

    Config: type

    @classmethod
    def from_config(cls, num_classes: int, cfg: Any) -> nn.Module: ...


# loss.unsupervised name -> the loss; the order is the order of docs/config.md.
UNSUPERVISED_LOSSES: dict[str, type[UnsupervisedLoss]] = {
    "tufl": TUFL,
    "nce": NeutralCrossEntropy,
    "fixed_focal": FixedThresholdFocalLoss,
    "entropy": EntropyMinimization,
    "max_squares": MaxSquares,
    "conf_entropy": ConfidenceEntropy,
}
UNSUPERVISED_LOSS_CONFIGS: dict[str, type] = {name: loss.Config for name, loss in UNSUPERVISED_LOSSES.items()}


@dataclass(frozen=True)
class _LossSection:
    """Supervised loss, the unsupervised loss and its weight; each unsupervised loss has its own
    sub-section, and only the one named by ``unsupervised`` is used."""

    # Unsupervised target loss: tufl (the paper); the baselines nce (neutral
    # cross-entropy, gamma = 0), fixed_focal, entropy, max_squares, conf_entropy, in
    # the authors' forms by default (docs/faithfulness.md); none for source-only training.
    unsupervised: str = "tufl"
    # Weight of the unsupervised loss (authors' BiSeNet setting: 0.08).
    lambda_u: float = 0.08
    # Source cross-entropy: class_weights (null = all 1), ohem_ratio (1 = off).
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)

    def unsupervised_config(self) -> Any:
        """The sub-section of the selected unsupervised loss."""
        return getattr(self, self.unsupervised)

    def problems(self) -> list[str]:
        return ["lambda_u: must be >= 0"] if self.lambda_u < 0 else []


LossConfig = dataclasses.make_dataclass(
    "LossConfig",
    [("unsupervised", Literal[(*UNSUPERVISED_LOSSES, "none")], "tufl")]  # type: ignore[misc]
    + [(name, config, field(default_factory=config)) for name, config in UNSUPERVISED_LOSS_CONFIGS.items()],
    bases=(_LossSection,),
    frozen=True,
    namespace={"__doc__": _LossSection.__doc__, "__module__": __name__},
)


def build_unsupervised_loss(name: str, num_classes: int, cfg: Any | None = None) -> nn.Module:
    """The unsupervised loss ``name`` (a key of :data:`UNSUPERVISED_LOSSES`) for ``num_classes``.

    ``cfg`` must be the config dataclass registered for ``name`` (``None``: its defaults).
    Every returned module is called as ``loss(weak_logits, strong_logits, valid=None)``.
    """
    if name not in UNSUPERVISED_LOSSES:
        raise ValueError(f"unknown unsupervised loss {name!r}; choose one of {sorted(UNSUPERVISED_LOSSES)}")
    loss = UNSUPERVISED_LOSSES[name]
    cfg = loss.Config() if cfg is None else cfg
    if type(cfg) is not loss.Config:
        raise TypeError(f"unsupervised loss {name!r} needs a {loss.Config.__name__}, got {type(cfg).__name__}")
    try:
        return loss.from_config(num_classes, cfg)
    except ValueError as error:
        raise ValueError(f"unsupervised loss {name!r}: {error}") from None


def build_supervised_loss(num_classes: int, cfg: SupervisedConfig | None = None) -> SupervisedCE:
    """Supervised cross-entropy for ``num_classes`` from ``cfg`` (``None``: defaults)."""
    cfg = SupervisedConfig() if cfg is None else cfg
    if type(cfg) is not SupervisedConfig:
        raise TypeError(f"supervised loss needs a SupervisedConfig, got {type(cfg).__name__}")
    try:
        return SupervisedCE.from_config(num_classes, cfg)
    except ValueError as error:
        raise ValueError(f"supervised loss: {error}") from None


__all__ = [
    "UNSUPERVISED_LOSSES",
    "UNSUPERVISED_LOSS_CONFIGS",
    "AdaptiveThresholdConfig",
    "ConfEntropyConfig",
    "EntropyConfig",
    "FixedFocalConfig",
    "LossConfig",
    "MaxSquaresConfig",
    "NCEConfig",
    "SupervisedConfig",
    "TUFLConfig",
    "build_supervised_loss",
    "build_unsupervised_loss",
]
