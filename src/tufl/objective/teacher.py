"""An exponential-moving-average (mean) teacher of the student network.

As in DACS and DAFormer, the teacher starts as a copy of the student's starting
weights and, after every optimiser step, moves towards the student:
``teacher = alpha * teacher + (1 - alpha) * student`` with
``alpha = min(1 - 1 / (steps + 1), momentum)``, ``steps`` the optimiser steps done so
far. The warm-up part makes the teacher the plain average of the weights seen so far
(the starting weights included) until that average weighs old weights less than the
moving average would. Only the student's trainable parameters are averaged; frozen
parameters and buffers (frozen BatchNorm statistics) stay those of the starting weights,
which is what they equal in the student too.

Modes, as those codebases run their teacher: in training mode with dropout and
DropPath off. Its BatchNorm layers therefore normalise as the student's do: frozen
layers with their running statistics, trainable ones with the statistics of the batch
(here without updating the teacher's running statistics, so a teacher forward changes
no state). The update is a device-side blend whose weight is 0 when the step was not
finite: a skipped step leaves the teacher exactly as it was, with no host read.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from tufl.objective.pseudo_labels import predict_pseudo_labels


def ema_alpha(momentum: float, steps: int) -> float:
    """The teacher's weight after ``steps`` optimiser steps: ``min(1 - 1 / (steps + 1), momentum)``."""
    return min(1.0 - 1.0 / (steps + 1), momentum)


def _is_stochastic(module: nn.Module) -> bool:
    """Dropout of any kind, or a DropPath (stochastic depth) layer, by class name."""
    return isinstance(module, _DropoutNd) or type(module).__name__ in ("DropPath", "StochasticDepth")


class EMATeacher(nn.Module):
    """A moving average of ``student`` (a copy made now), predicting pseudo-labels."""

    def __init__(self, student: nn.Module, momentum: float) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.model = copy.deepcopy(student)
        # The averaged pairs: the student's trainable parameters and their copies.
        self._names = [name for name, p in student.named_parameters() if p.requires_grad]
        self.model.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> EMATeacher:
        """The teacher always runs as DACS/DAFormer run theirs, whatever ``mode``."""
        super().train(True)
        for module in self.model.modules():
            if _is_stochastic(module):
                module.eval()
            if isinstance(module, _BatchNorm):
                module.track_running_stats = False  # batch statistics, running ones left as they are
        return self

    @torch.no_grad()
    def predict(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Hard pseudo-labels ``[B, H, W]`` and confidences (max softmax) of ``images``."""
        return predict_pseudo_labels(self.model, images)

    def _pairs(self, student: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        own = dict(self.model.named_parameters())
        theirs = dict(student.named_parameters())
        return [own[n] for n in self._names], [theirs[n].detach() for n in self._names]

    @torch.no_grad()
    def update(self, student: nn.Module, finite: Tensor, steps: int) -> None:
        """Blend the student in after its ``steps``-th optimiser step; no change where ``finite``
        (a bool device tensor) is false. No host synchronisation."""
        teacher_params, student_params = self._pairs(student)
        if not teacher_params:
            return
        blend = 1.0 - ema_alpha(self.momentum, steps)
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], list[Tensor]]] = {}
        for t, s in zip(teacher_params, student_params):
            group = groups.setdefault((t.device, t.dtype), ([], []))
            group[0].append(t)
            group[1].append(s)
        for (device, dtype), (ts, ss) in groups.items():
            weight = torch.where(finite.to(device), blend, 0.0).to(dtype)
            # t + w * (s - t): with w = 0 every teacher value stays bit for bit what it was.
            steps_ = torch._foreach_sub(ss, ts)
            torch._foreach_mul_(steps_, weight)
            torch._foreach_add_(ts, steps_)
