"""Losses: TUFL, its baselines and the supervised cross-entropy.

* :mod:`tufl.losses.tufl` - TUFL, the method (the per-pixel formula once, thresholds,
  masking, OHEM, mean); :mod:`tufl.losses.backends` - faster computations of its
  per-pixel terms;
* :mod:`tufl.losses.baselines` - :class:`EntropyMinimization`, :class:`MaxSquares`,
  :class:`ConfidenceEntropy`, :class:`FixedThresholdFocalLoss`, the neutral
  cross-entropy;
* :class:`SupervisedCE` - pixel cross-entropy with ignore index 255;
* :mod:`tufl.losses.registry` - the registry of unsupervised losses, the ``loss`` config
  section and :func:`build_unsupervised_loss` / :func:`build_supervised_loss`.
"""

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
    neutral_cross_entropy,
)
from tufl.losses.registry import (
    UNSUPERVISED_LOSS_CONFIGS,
    UNSUPERVISED_LOSSES,
    LossConfig,
    build_supervised_loss,
    build_unsupervised_loss,
)
from tufl.losses.supervised import SupervisedCE, SupervisedConfig
from tufl.losses.thresholds import order_statistic_psi
from tufl.losses.tufl import TUFL, AdaptiveThresholdConfig, TUFLConfig, focal_pixel_terms

__all__ = [
    "TUFL",
    "UNSUPERVISED_LOSSES",
    "UNSUPERVISED_LOSS_CONFIGS",
    "AdaptiveThresholdConfig",
    "ConfEntropyConfig",
    "ConfidenceEntropy",
    "EntropyConfig",
    "EntropyMinimization",
    "FixedFocalConfig",
    "FixedThresholdFocalLoss",
    "LossConfig",
    "MaxSquares",
    "MaxSquaresConfig",
    "NCEConfig",
    "NeutralCrossEntropy",
    "SupervisedCE",
    "SupervisedConfig",
    "TUFLConfig",
    "build_supervised_loss",
    "build_unsupervised_loss",
    "focal_pixel_terms",
    "neutral_cross_entropy",
    "order_statistic_psi",
]
