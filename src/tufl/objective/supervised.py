"""The supervised term: cross-entropy on the labelled source images, averaged over heads."""

from __future__ import annotations

from typing import Any

from tufl.losses.registry import LossConfig, build_supervised_loss
from tufl.losses.supervised import SupervisedCE
from tufl.objective.term import BuildContext, Outputs, Step, Term, TermLoss, TermSpec, mean_over_heads


class SupervisedTerm(Term):
    """``L_sup``: :class:`~tufl.losses.supervised.SupervisedCE` (``loss.supervised``) on every head."""

    spec = TermSpec("supervised", ("source_only", "stage1", "stage2"), "loss", LossConfig, reads=("source",),
                    needs_target=False)

    def __init__(self, loss: SupervisedCE) -> None:
        super().__init__()
        self.criterion = loss

    @classmethod
    def build(cls, ctx: BuildContext) -> SupervisedTerm:
        cfg: Any = ctx.cfg
        return cls(build_supervised_loss(cfg.model.num_classes, cfg.loss.supervised))

    def inputs(self, step: Step) -> dict:
        return {"source": step.source["image"]}

    def loss(self, step: Step, out: Outputs) -> TermLoss:
        sup = mean_over_heads([self.criterion(logits, step.source["label"]) for logits in out.per_head("source")])
        return TermLoss(sup, {"loss_sup": sup.detach()})
