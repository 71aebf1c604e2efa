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

from tufl.losses import baselines
from tufl.losses.supervised import SupervisedCE, SupervisedConfig
from tufl.losses.tufl import TUFL
from tufl.runtime.checks import at_least


class UnsupervisedLoss(Protocol):
    """What a registry entry provides."""

    Config: type

    @classmethod
    def from_config(cls, num_classes: int, cfg: Any) -> nn.Module: ...


# loss.unsupervised name -> the loss; the order is the order of docs/config.md.
UNSUPERVISED_LOSSES: dict[str, type[UnsupervisedLoss]] = {
    "tufl": TUFL,
    "nce": baselines.NeutralCrossEntropy,
    "fixed_focal": baselines.FixedThresholdFocalLoss,
    "entropy": baselines.EntropyMinimization,
    "max_squares": baselines.MaxSquares,
    "conf_entropy": baselines.ConfidenceEntropy,
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
        return at_least("lambda_u", self.lambda_u, 0.0)


LossConfig = dataclasses.make_dataclass(
    "LossConfig",
    [("unsupervised", Literal[(*UNSUPERVISED_LOSSES, "none")], "tufl")]  # type: ignore[misc]
    + [(name, config, field(default_factory=config)) for name, config in UNSUPERVISED_LOSS_CONFIGS.items()],
    bases=(_LossSection,),
    frozen=True,
    namespace={"__doc__": _LossSection.__doc__, "__module__": __name__},
)


def _build(what: str, loss: type[UnsupervisedLoss], num_classes: int, cfg: Any | None) -> nn.Module:
    """``loss`` from ``cfg``, which must be exactly its ``Config`` (``None``: the defaults); errors name ``what``."""
    cfg = loss.Config() if cfg is None else cfg
    if type(cfg) is not loss.Config:
        raise TypeError(f"{what} needs a {loss.Config.__name__}, got {type(cfg).__name__}")
    try:
        return loss.from_config(num_classes, cfg)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None


def build_unsupervised_loss(name: str, num_classes: int, cfg: Any | None = None) -> nn.Module:
    """The unsupervised loss ``name`` (a key of :data:`UNSUPERVISED_LOSSES`) for ``num_classes``.

    ``cfg`` must be the config dataclass registered for ``name`` (``None``: its defaults).
    Every returned module is called as ``loss(weak_logits, strong_logits, valid=None)``.
    """
    if name not in UNSUPERVISED_LOSSES:
        raise ValueError(f"unknown unsupervised loss {name!r}; choose one of {sorted(UNSUPERVISED_LOSSES)}")
    return _build(f"unsupervised loss {name!r}", UNSUPERVISED_LOSSES[name], num_classes, cfg)


def build_supervised_loss(num_classes: int, cfg: SupervisedConfig | None = None) -> SupervisedCE:
    """Supervised cross-entropy for ``num_classes`` from ``cfg`` (``None``: defaults)."""
    return _build("supervised loss", SupervisedCE, num_classes, cfg)  # type: ignore[return-value]


__all__ = [
    "UNSUPERVISED_LOSSES",
    "UNSUPERVISED_LOSS_CONFIGS",
    "LossConfig",
    "build_supervised_loss",
    "build_unsupervised_loss",
]
