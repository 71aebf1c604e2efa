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

from tufl.losses import baselines, registry, supervised, tufl
from tufl.losses.baselines import *  # noqa: F403 - each module's __all__ is its public API
from tufl.losses.registry import *  # noqa: F403
from tufl.losses.supervised import *  # noqa: F403
from tufl.losses.thresholds import order_statistic_psi
from tufl.losses.tufl import *  # noqa: F403

__all__ = [*baselines.__all__, *registry.__all__, *supervised.__all__, *tufl.__all__, "order_statistic_psi"]
