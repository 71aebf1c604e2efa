"""The parts a stage objective is made of: :class:`Term`, and what terms share in a step.

A term is one named part of the loss (the supervised cross-entropy, the TUFL
consistency, the cross-domain mixing, the masked image consistency, ...). In every
micro-batch the objective

1. asks the pseudo-label source for the weak view's pseudo-labels when a term
   ``needs_pseudo_labels`` (:mod:`tufl.objective.pseudo_labels`);
2. calls each term's :meth:`Term.inputs`, in registry order: the image batches it
   adds to the forward pass, by name (``"source"``, ``"weak"``, ``"mixed.0"``, ...);
3. runs the network once over all of them (:func:`run_forward`) and hands each term
   the logits of every head by input name (:class:`Outputs`);
4. sums each term's :meth:`Term.loss`, its weighted contribution and values to log;
5. after the optimiser step, calls each term's :meth:`Term.after_step`.

A term declares the forward outputs it reads (``reads``); the objective checks
that an earlier term (or the term itself) provides each of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from tufl.models.segmentor import SegOutput

Batch = dict[str, Any]
Forward = Callable[[Tensor], SegOutput]


@dataclass
class Step:
    """One micro-batch as the terms see it.

    ``pseudo_labels``: hard labels ``[B, H, W]`` and confidences of the weak target
    view, when a term needs them. ``shared``: values a term hands to the terms after
    it within the step (the consistency term's thresholds, the mixing term's result).
    """

    source: Batch
    target: Batch | None
    generator: torch.Generator
    pseudo_labels: tuple[Tensor, Tensor] | None = None
    shared: dict[str, Any] = field(default_factory=dict)


class Outputs:
    """The network's logits (float32) of one forward pass: per head, per input name."""

    def __init__(self, heads: list[dict[str, Tensor]]) -> None:
        self.heads = heads

    @property
    def num_heads(self) -> int:
        return len(self.heads)

    def main(self, name: str) -> Tensor:
        """The main head's logits of input ``name``."""
        return self.heads[0][name]

    def per_head(self, name: str) -> list[Tensor]:
        """Every head's logits of input ``name``, main first."""
        return [head[name] for head in self.heads]


@dataclass
class TermLoss:
    """A term's weighted contribution to the total loss and its detached values to log."""

    value: Tensor
    logs: dict[str, Tensor]


@dataclass
class BuildContext:
    """What a term may need to build itself: the run's config (its sections, read by name),
    the student network and the training data (:class:`~tufl.train.builders.TrainData`),
    and the weights the run starts from (a frozen copy labels the target in stage two)."""

    cfg: Any
    model: nn.Module
    data: Any
    start_weights: dict[str, Any] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@dataclass(frozen=True)
class TermSpec:
    """What a term declares: its registry ``name``; the modes (``experiment.mode``) whose
    objective has it when enabled (``stages``); the config ``section`` it reads and that
    section's dataclass (``config``; None when it reads another term's section); the
    forward outputs it reads by input name (``reads``); whether it reads the target batch
    and the weak view's pseudo-labels."""

    name: str
    stages: tuple[str, ...]
    section: str | None = None
    config: type | None = None
    reads: tuple[str, ...] = ()
    needs_target: bool = True
    needs_pseudo_labels: bool = False


class Term(nn.Module):
    """One named part of a stage objective (see the module docstring).

    Subclasses declare their :class:`TermSpec` as ``spec`` and implement :meth:`build` and
    :meth:`loss`; :meth:`enabled`, :meth:`inputs` and :meth:`after_step` are optional. A
    term's state (a loss's thresholds) travels in checkpoints through ``state_dict`` under
    its name.
    """

    spec: ClassVar[TermSpec]

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        """Whether the run's config switches the term on (in one of its stages)."""
        return True

    @classmethod
    def build(cls, ctx: BuildContext) -> Term:
        """The term of a run."""
        raise NotImplementedError

    def inputs(self, step: Step) -> dict[str, Tensor]:
        """Image batches ``[B, 3, H, W]`` to add to the forward pass, by input name."""
        return {}

    def loss(self, step: Step, out: Outputs) -> TermLoss:
        """The weighted contribution to the total loss, and values to log."""
        raise NotImplementedError

    def after_step(self, student: nn.Module, finite: Tensor, steps: int) -> None:
        """After the ``steps``-th optimiser step (``finite``: whether it was taken)."""


def mean_over_heads(values: list[Tensor]) -> Tensor:
    """The mean of one scalar per head."""
    return torch.stack(values).mean()


def run_forward(forward: Forward, inputs: dict[str, Tensor], concat: bool) -> Outputs:
    """Run the named image batches through the network (in one pass when ``concat``)."""
    names, chunks = list(inputs), list(inputs.values())
    if concat:
        sizes = [c.shape[0] for c in chunks]
        batch = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        per_head = [torch.split(head.float(), sizes) for head in forward(batch).heads()]
    else:
        outs = [forward(c).heads() for c in chunks]
        per_head = [[o[h].float() for o in outs] for h in range(len(outs[0]))]
    return Outputs([dict(zip(names, chunks_of_head)) for chunks_of_head in per_head])
