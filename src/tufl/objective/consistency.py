"""The consistency term: the unsupervised loss (TUFL by default) between the weak and the
strong target view, one loss state (thresholds) per head.

The weak view's logits are warped into the strong view's geometry
(:func:`~tufl.data.views.warp_to_strong`) and compared with the strong view's; pixels
the warp leaves outside the image are not counted. Weighted by ``loss.lambda_u``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tufl.data.views import warp_to_strong
from tufl.losses.registry import LossConfig, build_unsupervised_loss
from tufl.objective.term import BuildContext, Outputs, Step, Term, TermLoss, TermSpec, mean_over_heads


class ConsistencyTerm(Term):
    """``lambda_u`` x the unsupervised loss ``loss.unsupervised`` on every head."""

    spec = TermSpec("consistency", ("stage1", "stage2"), "loss", LossConfig, reads=("weak", "strong"))

    def __init__(self, losses: list[nn.Module], weight: float) -> None:
        super().__init__()
        self.losses = nn.ModuleList(losses)  # one per head
        self.weight = weight

    @classmethod
    def build(cls, ctx: BuildContext) -> ConsistencyTerm:
        cfg: Any = ctx.cfg
        n, heads = cfg.model.num_classes, ctx.model.num_outputs
        losses = [build_unsupervised_loss(cfg.loss.unsupervised, n, cfg.loss.unsupervised_config())
                  for _ in range(heads)]
        return cls(losses, cfg.loss.lambda_u)

    @property
    def thresholds(self) -> Tensor | None:
        """The main head's current per-class thresholds (None for losses without)."""
        return getattr(self.losses[0], "thresholds", None)

    def inputs(self, step: Step) -> dict[str, Tensor]:
        thresholds = self.thresholds  # as they are before this step's update (the mixing reads them)
        step.shared["thresholds"] = thresholds.detach() if thresholds is not None else None
        assert step.target is not None
        return {"weak": step.target["weak"], "strong": step.target["strong"]}

    def loss(self, step: Step, out: Outputs) -> TermLoss:
        if out.num_heads != len(self.losses):
            raise RuntimeError(f"network has {out.num_heads} heads but the objective {len(self.losses)}")
        assert step.target is not None
        values, passes = [], []
        for head, loss in zip(out.heads, self.losses):
            warped, valid = warp_to_strong(head["weak"], step.target["theta"])
            values.append(loss(warped, head["strong"], valid))
            passed = getattr(loss, "last_pass_fraction", None)
            if passed is not None:
                passes.append(passed)
        unsup = mean_over_heads(values)
        logged = {"loss_unsup": unsup.detach()}
        if passes:  # a loss without a pixel selection (max squares, conf. entropy) logs none, not a 0
            logged["pass_fraction"] = torch.stack(passes).mean().detach()
        return TermLoss(self.weight * unsup, logged)
