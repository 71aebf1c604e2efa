"""The objective-term registry, and each stage's objective as the terms it is made of.

A stage's objective is every registered term whose ``stages`` name the run's
``experiment.mode`` and which the config enables, in registry order:

================  =====================================================
``source_only``   supervised
``stage1``        supervised, consistency (+ mic when ``mic.weight > 0``)
``stage2``        supervised, consistency, mixing (+ mic)
================  =====================================================

Adding a term (a method such as MIC) is one module with a :class:`~tufl.objective.term.Term`
subclass and one :meth:`~tufl.runtime.registry.Registry.register` call; a term with its
own ``section`` gets that section in the experiment config (``docs/extending.md``).
"""

from __future__ import annotations

from typing import Any, Literal

from tufl.objective.consistency import ConsistencyTerm
from tufl.objective.mic import MicTerm
from tufl.objective.mixing import MixingTerm
from tufl.objective.supervised import SupervisedTerm
from tufl.objective.term import Term
from tufl.runtime.registry import Registry

# experiment.mode: source_only: supervised only; stage1: + TUFL; stage2: + cross-domain mixing.
Mode = Literal["source_only", "stage1", "stage2"]
MODES: tuple[str, ...] = ("source_only", "stage1", "stage2")

# The order is the order of the forward inputs, the losses' sum and the logs.
TERMS: Registry[type[Term]] = Registry("objective term")
for _term in (SupervisedTerm, ConsistencyTerm, MixingTerm, MicTerm):
    TERMS.register(_term.spec.name, _term)


def stage_terms(cfg: Any) -> list[type[Term]]:
    """The terms of the objective of ``cfg`` (its ``experiment.mode`` and switches)."""
    mode = cfg.experiment.mode
    return [term for _, term in TERMS.items() if mode in term.spec.stages and term.enabled(cfg)]


def term_sections() -> dict[str, type]:
    """The config sections the registered terms read: ``{section name: dataclass}``."""
    sections: dict[str, type] = {}
    for name, term in TERMS.items():
        spec = term.spec
        if spec.section is not None and spec.config is not None:
            known = sections.setdefault(spec.section, spec.config)
            if known is not spec.config:
                raise TypeError(f"objective term {name!r}: section {spec.section!r} is already "
                                f"{known.__name__}, not {spec.config.__name__}")
    return sections
