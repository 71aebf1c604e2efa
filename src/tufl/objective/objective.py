"""A stage's training objective: its terms, run on one micro-batch.

* ``source_only``: supervised cross-entropy on source images.
* ``stage1``: supervised + ``lambda_u`` x unsupervised loss (TUFL by default)
  between the weak target view, warped into the strong view's geometry, and the
  strong view.
* ``stage2``: stage one + ``lambda_mix`` x the loss on cross-domain mixed images
  whose target pixels carry pseudo-labels of a frozen stage-one model (or of files,
  or of an EMA teacher of the student: :mod:`tufl.objective.teacher`).
* either stage may add ``mic.weight`` x the masked image consistency term
  (:mod:`tufl.objective.mic`) on the weak target view, towards the pseudo-labels
  (stage two: the pseudo-label source; stage one: an EMA teacher made for it).

Each part is a :class:`~tufl.objective.term.Term` of the registry
(:mod:`tufl.objective.registry`); :class:`Objective` runs them: one forward pass
over every term's inputs, the sum of their losses. The supervised and unsupervised
terms average over the network's heads (main and auxiliary maps), with one threshold
state per head; the mixed loss is computed on the main head (the authors' choice) or
averaged over all heads. The objective is a module so that its states (TUFL
thresholds, the EMA teacher) travel in checkpoints through ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tufl.mixing.mixer import MixResult
from tufl.objective.pseudo_labels import PseudoLabelSource
from tufl.objective.registry import stage_terms
from tufl.objective.teacher import EMATeacher
from tufl.objective.term import Batch, BuildContext, Forward, Step, Term, run_forward

# Objective states written before the terms existed (checkpoint format 1) held the
# per-head unsupervised losses as unsupervised.<head>.*; they are now the consistency
# term's consistency.losses.<head>.*.
LEGACY_PREFIXES = (("unsupervised.", "consistency.losses."),)


@dataclass
class StepOutput:
    """Total loss of a micro-batch, detached values to log, and the mixed batch (stage two)."""

    loss: Tensor
    logs: dict[str, Tensor]
    mix: MixResult | None = None


class Objective(nn.Module):
    """The sum of ``terms`` (in order) over one forward pass of their inputs.

    ``pseudo_labels`` serves the terms that need the weak view's pseudo-labels; its
    EMA teacher, if any, is the objective's ``teacher`` submodule (checkpointed, and
    moved towards the student after every optimiser step).
    """

    def __init__(self, terms: list[Term], pseudo_labels: PseudoLabelSource | None = None,
                 concat_forward: bool = True) -> None:
        super().__init__()
        if not terms:
            raise ValueError("an objective needs at least one term")
        self.names = [term.name for term in terms]
        for term in terms:
            if hasattr(self, term.name) or term.name in ("teacher", "pseudo_labels"):
                raise ValueError(f"objective term name {term.name!r} is taken; choose another")
            self.add_module(term.name, term)
        self.pseudo_labels = pseudo_labels
        self.teacher = pseudo_labels.teacher if pseudo_labels is not None else None
        self.concat_forward = concat_forward

    @property
    def terms(self) -> list[Term]:
        return [getattr(self, name) for name in self.names]

    @property
    def needs_target(self) -> bool:
        """Whether any term reads the target batch."""
        return any(term.spec.needs_target for term in self.terms)

    @property
    def snapshot_exclude(self) -> tuple[str, ...]:
        """State-dict prefixes the per-step snapshot skips (the teacher changes only after a step)."""
        return ("teacher.",) if self.teacher is not None else ()

    @property
    def thresholds(self) -> Tensor | None:
        """Current per-class thresholds of the main head (None without adaptive thresholds)."""
        for term in self.terms:
            thresholds = getattr(term, "thresholds", None)
            if thresholds is not None:
                return thresholds
        return None

    def forward(self, forward: Forward, source: Batch, target: Batch | None,
                generator: torch.Generator) -> StepOutput:
        step = Step(source, target, generator)
        if self.pseudo_labels is not None:
            assert target is not None
            step.pseudo_labels = self.pseudo_labels(target)
        inputs: dict[str, Tensor] = {}
        for term in self.terms:
            added = term.inputs(step)
            _check_inputs(term, added, inputs)
            inputs.update(added)
        outputs = run_forward(forward, inputs, self.concat_forward)
        total: Tensor | None = None
        logs: dict[str, Tensor] = {}
        for term in self.terms:
            part = term.loss(step, outputs)
            total = part.value if total is None else total + part.value
            logs.update(part.logs)
        assert total is not None
        return StepOutput(total, logs, step.shared.get("mix"))

    def after_step(self, student: nn.Module, finite: Tensor, steps: int) -> None:
        """After the student's ``steps``-th optimiser step: move the EMA teacher (unchanged
        where ``finite`` is false), then the terms' own hooks."""
        if self.teacher is not None:
            self.teacher.update(student, finite, steps)
        for term in self.terms:
            term.after_step(student, finite, steps)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """As :meth:`nn.Module.load_state_dict`, reading states of format 1 too (:data:`LEGACY_PREFIXES`)."""
        return super().load_state_dict(upgrade_state(state_dict), strict=strict, assign=assign)


def upgrade_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """An objective state with the key names of :data:`LEGACY_PREFIXES` renamed."""
    out = {}
    for key, value in state.items():
        for old, new in LEGACY_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old):]
        out[key] = value
    return out


def _check_inputs(term: Term, added: dict[str, Tensor], known: dict[str, Tensor]) -> None:
    """Each input name once; every name the term reads provided by it or an earlier term."""
    clash = added.keys() & known.keys()
    if clash:
        raise RuntimeError(f"objective term {term.name!r} adds forward inputs {sorted(clash)} that an earlier "
                           "term already added")
    missing = [name for name in term.spec.reads if name not in added and name not in known]
    if missing:
        raise RuntimeError(f"objective term {term.name!r} reads forward inputs {missing}, which no term "
                           f"before it adds (there are: {sorted(known.keys() | added.keys())})")


def build_objective(ctx: BuildContext, labeller: nn.Module | None = None) -> Objective:
    """The objective of ``ctx.cfg``'s stage (:func:`~tufl.objective.registry.stage_terms`).

    ``labeller``: the frozen starting model that labels the target (stage two, ``online``).
    An EMA teacher of the student is made when a term needs pseudo-labels and they come
    from one (``pseudo_labels.source: ema``, or stage one, which has no other).
    """
    cfg: Any = ctx.cfg
    terms = [term.build(ctx) for term in stage_terms(cfg)]
    source = None
    if any(term.spec.needs_pseudo_labels for term in terms):
        wants_teacher = cfg.pseudo_labels.source == "ema" or cfg.experiment.mode != "stage2"
        teacher = EMATeacher(ctx.model, cfg.pseudo_labels.ema_momentum) if wants_teacher else None
        source = PseudoLabelSource(teacher, None if teacher is not None else labeller)
    return Objective(terms, source, cfg.train.concat_forward)
