"""TUFL's training call as the two halves that :class:`tufl.losses.cuda_graphs.StepGraphs` records.

Both steps are pure: they return the new thresholds and step count, which the
recorded forward graph writes into TUFL's buffers.
:class:`KernelStep` runs the Triton kernels on logits read through the address
table (nothing copied into the graphs); :class:`TorchStep` runs the per-pixel torch
operations on logits copied into the graphs (no Triton, float64, or more than 64
classes). Both reduce with :func:`tufl.losses.focal_compiled.tufl_reduction`,
through ``torch.compile`` if asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch
from torch import Tensor

from tufl.losses.focal_compiled import compiled, tufl_reduction
from tufl.losses.focal_terms import focal_consistency_terms

# Logits read through the address table must start at a multiple of 16 bytes, as the
# allocator's tensors do: the kernels assume it (``tl.multiple_of``) to load 16-byte vectors.
ADDRESS_ALIGNMENT = 16


@dataclass(frozen=True)
class Reduction:
    """The threshold update and masked mean after the per-pixel terms (clamped at ``loss_floor``)."""

    update: tuple[float, float, float, float, float]
    ohem_ratio: float
    compile: bool
    loss_floor: float = 0.0

    def __call__(self, per_pixel: Tensor, conf: Tensor, cls: Tensor, thresholds: Tensor, step: Tensor,
                 valid: tuple[Tensor, ...]) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """``((loss, pass_fraction), (new thresholds, new step))``."""
        reduction = compiled(tufl_reduction) if self.compile else tufl_reduction
        mask = valid[0] if valid else None
        loss, pass_fraction, new_thresholds = reduction(
            per_pixel, conf, cls, mask, thresholds, step, self.update, self.ohem_ratio, self.loss_floor
        )
        return (loss, pass_fraction), (new_thresholds, step + 1)


@dataclass(frozen=True)
class KernelStep:
    """Addressed: the contiguous ``[B, C, H, W]`` weak and strong logits (read as ``[B, C, H * W]``).
    Held: thresholds, step. Copied: ``valid``, if any."""

    kernels: ModuleType  # tufl.losses.focal_triton
    shape: tuple[int, int, int, int]  # B, C, H, W
    weights: Tensor | None
    options: tuple[float, int, bool]  # gamma, focal_type, detach_focal
    want: tuple[bool, bool]  # gradients of the weak and strong logits
    reduction: Reduction

    def forward(self, table: Tensor | None, thresholds: Tensor, step: Tensor, *valid: Tensor) -> tuple:
        """``((loss, pass_fraction), state, (new thresholds, new step))``."""
        batch, num_classes, height, width = self.shape
        flat = (batch, num_classes, height * width)
        loss, conf, cls, saved = self.kernels.launch_forward(table, flat, self.weights, self.options, True)
        per_pixel = loss.requires_grad_()
        maps = (t.view(batch, height, width) for t in (per_pixel, conf, cls))
        outputs, updates = self.reduction(*maps, thresholds, step, valid)
        return outputs, (per_pixel, cls, saved, len(valid)), updates

    def backward(self, table: Tensor | None, grad_output: Tensor, outputs: tuple[Tensor, ...], state: tuple) -> tuple:
        """Gradients of the weak and strong logits, then ``None`` for ``valid``."""
        per_pixel, cls, saved, valid_count = state
        (grad_loss,) = torch.autograd.grad(outputs[0], per_pixel, grad_output)
        batch, num_classes, height, width = self.shape
        grads = self.kernels.launch_backward(
            table, (batch, num_classes, height * width), self.weights, cls, saved, grad_loss, self.want
        )
        return tuple(None if g is None else g.view(self.shape) for g in grads) + (None,) * valid_count


@dataclass(frozen=True)
class TorchStep:
    """Held: thresholds, step. Copied: the ``[B, C, H, W]`` weak and strong logits, then ``valid``, if any."""

    focal: tuple[float, int, Tensor | None, bool]  # gamma, focal_type, class_weights, detach_focal
    reduction: Reduction

    def forward(self, table: Tensor | None, thresholds: Tensor, step: Tensor, weak: Tensor, strong: Tensor,
                *valid: Tensor) -> tuple:
        """``((loss, pass_fraction), state, (new thresholds, new step))``."""
        per_pixel, conf, cls = focal_consistency_terms(weak, strong, *self.focal)
        outputs, updates = self.reduction(per_pixel, conf, cls, thresholds, step, valid)
        return outputs, (weak, strong, len(valid)), updates

    def backward(self, table: Tensor | None, grad_output: Tensor, outputs: tuple[Tensor, ...], state: tuple) -> tuple:
        """Gradients of the weak and strong logits, then ``None`` for ``valid``."""
        weak, strong, valid_count = state
        wanted = [t for t in (weak, strong) if t.requires_grad]
        grads = iter(torch.autograd.grad(outputs[0], wanted, grad_output))
        return tuple(next(grads) if t.requires_grad else None for t in (weak, strong)) + (None,) * valid_count
