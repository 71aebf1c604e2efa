"""The training objective of each stage, as named terms (:mod:`tufl.objective.registry`).

* :mod:`tufl.objective.term` - the :class:`Term` protocol and what terms share in a step;
* the terms: :mod:`~tufl.objective.supervised`, :mod:`~tufl.objective.consistency`
  (TUFL), :mod:`~tufl.objective.mixing` (CIM), :mod:`~tufl.objective.mic` (MIC);
* :mod:`tufl.objective.pseudo_labels` - where pseudo-labels come from (files, a frozen
  model, the EMA teacher of :mod:`tufl.objective.teacher`);
* :mod:`tufl.objective.objective` - :class:`Objective`, the terms of one stage run together.
"""

from tufl.objective.objective import Objective, StepOutput, build_objective
from tufl.objective.registry import MODES, TERMS, Mode, stage_terms, term_sections
from tufl.objective.term import BuildContext, Outputs, Step, Term, TermLoss, TermSpec

__all__ = [
    "MODES",
    "TERMS",
    "BuildContext",
    "Mode",
    "Objective",
    "Outputs",
    "Step",
    "StepOutput",
    "Term",
    "TermLoss",
    "TermSpec",
    "build_objective",
    "stage_terms",
    "term_sections",
]
