"""Losses: TUFL, its baselines and the supervised cross-entropy.

* :class:`TUFL` - threshold-adaptive unsupervised focal loss (PAPER.md, stage one);
* baselines: :class:`EntropyMinimization`, :class:`MaxSquares`,
  :class:`ConfidenceEntropy`, :class:`FixedThresholdFocalLoss`,
  :func:`neutral_cross_entropy`;
* :class:`SupervisedCE` - pixel cross-entropy with ignore index 255;
* configuration dataclasses and :func:`build_unsupervised_loss` /
  :func:`build_supervised_loss`;
* :class:`tufl.losses.reference.ReferenceTUFL` - the slow literal TUFL used by
  tests and benchmarks.
"""

from tufl.losses.baselines import (
    ConfidenceEntropy,
    EntropyMinimization,
    FixedThresholdFocalLoss,
    MaxSquares,
    neutral_cross_entropy,
)
from tufl.losses.config import (
    UNSUPERVISED_LOSS_CONFIGS,
    AdaptiveThresholdConfig,
    ConfEntropyConfig,
    EntropyConfig,
    FixedFocalConfig,
    MaxSquaresConfig,
    NCEConfig,
    SupervisedConfig,
    TUFLConfig,
    build_supervised_loss,
    build_unsupervised_loss,
)
from tufl.losses.focal_terms import focal_consistency_terms
from tufl.losses.supervised import SupervisedCE
from tufl.losses.thresholds import order_statistic_psi
from tufl.losses.tufl import TUFL

__all__ = [
    "TUFL",
    "UNSUPERVISED_LOSS_CONFIGS",
    "AdaptiveThresholdConfig",
    "ConfEntropyConfig",
    "ConfidenceEntropy",
    "EntropyConfig",
    "EntropyMinimization",
    "FixedFocalConfig",
    "FixedThresholdFocalLoss",
    "MaxSquares",
    "MaxSquaresConfig",
    "NCEConfig",
    "SupervisedCE",
    "SupervisedConfig",
    "TUFLConfig",
    "build_supervised_loss",
    "build_unsupervised_loss",
    "focal_consistency_terms",
    "neutral_cross_entropy",
    "order_statistic_psi",
]
