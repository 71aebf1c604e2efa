"""Threshold-adaptive unsupervised focal loss (PAPER.md, stage one)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tufl.losses.cuda_graphs import StepGraphs
from tufl.losses.focal_compiled import compiled, differentiable_focal_terms, tufl_step
from tufl.losses.focal_terms import focal_consistency_terms, triton_kernels, with_kernel_fallback
from tufl.losses.graph_steps import ADDRESS_ALIGNMENT, KernelStep, Reduction, TorchStep
from tufl.losses.reused_memory import ReusedMemory
from tufl.losses.selection import thresholded_mean
from tufl.losses.thresholds import (
    average_across_workers,
    ema_thresholds,
    history_weight,
    order_statistic_psi,
    workers_average_thresholds,
)
from tufl.losses.validation import (
    check_logit_pair,
    class_weight_tensor,
    floor_problems,
    focal_problems,
    ratio_problems,
    threshold_problems,
)


class TUFL(nn.Module):
    """TUFL: focal consistency from the weak to the strong view plus weak-view entropy,
    on pixels above adaptive per-class confidence thresholds.

    Called as ``loss(weak_logits, strong_logits, valid=None)`` with logits
    ``[B, C, H, W]`` (the weak ones already warped into the strong view) and an
    optional bool ``[B, H, W]`` mask of pixels that carry information; other pixels
    take part in nothing (threshold statistics, loss, mean). Each call, in training
    mode, first updates the thresholds from the batch (``psi``, averaged over
    data-parallel workers when ``torch.distributed`` is initialised, then the EMA
    and the 0.999 cap), then keeps pixels with ``m_i > theta_{c_i}``, applies OHEM
    (the ``ceil(ohem_ratio * n)`` largest per-pixel losses) and averages; the loss
    is 0 when no pixel passes; ``loss_floor > 0`` clamps each per-pixel loss at that
    floor before OHEM (no gradient below it, entropy term included; the authors'
    release uses 1e-8). In eval mode the thresholds are used but not updated.
    With ``a_decay > 0`` the history weight of the ``t``-th update (``t = 0, 1, ...``,
    counted by the ``step`` buffer) is ``1 - a * exp(-t * a_decay)``, else ``a``.

    The loss is computed in float32 (float64 for float64 logits) whatever the
    autocast state, and can be back-propagated once. Use one instance per output
    head: each keeps its own thresholds. On the CPU an instance keeps the memory of
    its gradient maps and scratch (about twice the size of one view's float32
    logits) between calls, handed out again only when no tensor from an earlier
    call still uses it (:mod:`tufl.losses.reused_memory`). ``last_pass_fraction``
    holds the fraction of valid pixels that passed the thresholds in the last call
    (a detached tensor).
    ``compile=True`` runs the per-pixel loss, the threshold statistic and the masked
    mean through ``torch.compile`` (:mod:`tufl.losses.focal_compiled`; same results,
    far fewer kernel launches on a GPU; the first call per shape compiles). On CUDA
    with Triton the threshold statistic is always a radix selection in Triton
    kernels (:mod:`tufl.losses.threshold_triton`, exactly the sort's result),
    outside the compiled graphs.
    ``cuda_graphs=True`` (CUDA tensors only) replays a training call's forward and
    backward passes as CUDA graphs, one launch per pass instead of one per kernel
    (:mod:`tufl.losses.cuda_graphs`; each call's backward must run before the next
    call, unless that call's loss was dropped): the per-pixel kernels of the default
    path, which read the logits where they are (nothing is copied into the graphs),
    then the threshold update and the masked mean, through ``torch.compile`` with
    ``compile=True``. Calls without
    gradients, in eval mode, or with thresholds averaged over data-parallel workers
    run without graphs. The returned loss and ``last_pass_fraction`` are copies that
    stay valid after later calls; gradients that reach leaf tensors directly live in
    the graphs' memory until the next call.
    """

    thresholds: Tensor
    step: Tensor

    def __init__(
        self,
        num_classes: int,
        gamma: float = 2.0,
        focal_type: int = 1,
        theta0: float = 0.8,
        a: float = 0.9,
        b: float = 0.8,
        d: float = 8.0,
        a_decay: float = 0.0,
        ohem_ratio: float = 1.0,
        class_weights: Sequence[float] | Tensor | None = None,
        detach_focal: bool = False,
        compile: bool = False,
        cuda_graphs: bool = False,
        loss_floor: float = 0.0,
    ) -> None:
        super().__init__()
        problems = (
            focal_problems(gamma, focal_type)
            + threshold_problems(theta0, a, b, d, a_decay)
            + ratio_problems("ohem_ratio", ohem_ratio)
            + floor_problems(loss_floor)
        )
        if num_classes < 1:
            problems.insert(0, f"num_classes: must be >= 1, got {num_classes}")
        if problems:
            raise ValueError("TUFL: " + "; ".join(problems))
        self.num_classes = num_classes
        self.gamma = float(gamma)
        self.focal_type = int(focal_type)
        self.a, self.b, self.d, self.a_decay = float(a), float(b), float(d), float(a_decay)
        self.ohem_ratio = float(ohem_ratio)
        self.loss_floor = float(loss_floor)
        self.detach_focal = bool(detach_focal)
        self.compile = bool(compile)
        self.cuda_graphs = bool(cuda_graphs)
        self.register_buffer("class_weights", class_weight_tensor(class_weights, num_classes), persistent=False)
        self.register_buffer("thresholds", torch.full((num_classes,), float(theta0), dtype=torch.float32))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.last_pass_fraction = torch.zeros(())
        self._memory = ReusedMemory()  # CPU scratch kept between calls (not state)
        self._graphs = StepGraphs(type(self).__name__)  # CUDA-graph recordings (not state)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, gamma={self.gamma}, focal_type={self.focal_type}, "
            f"a={self.a}, b={self.b}, d={self.d}, a_decay={self.a_decay}, ohem_ratio={self.ohem_ratio}, "
            f"loss_floor={self.loss_floor}, detach_focal={self.detach_focal}, compile={self.compile}, "
            f"cuda_graphs={self.cuda_graphs}"
        )

    @torch.no_grad()
    def update_thresholds(self, conf: Tensor, cls: Tensor, valid: Tensor | None) -> Tensor:
        """One threshold step from a batch's confidences and pseudo-classes; returns the new thresholds."""
        statistic = compiled(order_statistic_psi) if self.compile else order_statistic_psi
        psi = statistic(conf, cls, valid, self.thresholds, self.b, self.d, self._min_confidence())
        psi = average_across_workers(psi)
        a_t = history_weight(self.step, self.a, self.a_decay)
        self.thresholds.copy_(ema_thresholds(self.thresholds, psi, a_t))
        self.step += 1
        return self.thresholds

    def _min_confidence(self) -> float:
        # Softmax maxima are at least 1 / C (1 / (C + 1) leaves room for rounding).
        return 1.0 / (self.num_classes + 1)

    def forward(self, weak_logits: Tensor, strong_logits: Tensor, valid: Tensor | None = None) -> Tensor:
        check_logit_pair(weak_logits, strong_logits, valid, self.num_classes)
        if self.cuda_graphs and weak_logits.device.type != "cuda":
            raise ValueError(f"TUFL(cuda_graphs=True) needs CUDA tensors, got logits on {weak_logits.device}")
        averaged = self.training and workers_average_thresholds()
        device_type = weak_logits.device.type
        if self.cuda_graphs and self.training and not averaged and torch.is_grad_enabled() and (
            weak_logits.requires_grad or strong_logits.requires_grad
        ):
            if not torch.is_autocast_enabled(device_type):  # saves host time, which bounds a graphed call
                return self._graphed_step(weak_logits, strong_logits, valid)
            with torch.autocast(device_type=device_type, enabled=False):
                return self._graphed_step(weak_logits, strong_logits, valid)
        focal = (self.gamma, self.focal_type, self.class_weights, self.detach_focal)
        with torch.autocast(device_type=device_type, enabled=False):
            if self.compile and not averaged:
                return self._compiled_step(weak_logits, strong_logits, valid, focal)
            if self.compile:
                per_pixel, conf, cls = compiled(differentiable_focal_terms)(weak_logits, strong_logits, *focal)
            else:
                per_pixel, conf, cls = focal_consistency_terms(weak_logits, strong_logits, *focal, self._memory)
            conf = conf.float()
            if self.training:
                self.update_thresholds(conf, cls, valid)
            mean = compiled(thresholded_mean) if self.compile else thresholded_mean
            loss, pass_fraction = mean(per_pixel, conf, cls, valid, self.thresholds, self.ohem_ratio, self.loss_floor)
        return self._kept(loss, pass_fraction)

    def _kept(self, loss: Tensor, pass_fraction: Tensor) -> Tensor:
        """Stores the pass fraction and returns the loss."""
        self.last_pass_fraction = pass_fraction
        return loss

    def _graphed_step(self, weak: Tensor, strong: Tensor, valid: Tensor | None) -> Tensor:
        """A training call replayed from CUDA graphs (no data-parallel averaging of the thresholds).

        A graphed call's host time is of the order of its GPU time, so this path launches
        as few tensor operations as it can: the graphs also write the thresholds and the
        step count."""
        batch, num_classes, height, width = weak.shape
        dtype = torch.promote_types(weak.dtype, torch.float32)  # the loss is computed in float32 or float64
        kernels = triton_kernels(weak.device, dtype, num_classes)
        weights = None if self.class_weights is None else self.class_weights.data_ptr()  # recorded by address
        key = (kernels is not None, self.gamma, self.focal_type, self.detach_focal, weights, self.a, self.a_decay,
               self.b, self.d, self.ohem_ratio, self.loss_floor, self.compile)
        held, copied = (self.thresholds, self.step), () if valid is None else (valid,)
        outputs = None
        if kernels is not None:
            logits = (_addressable(weak, dtype), _addressable(strong, dtype))

            def kernel_step() -> KernelStep:
                options = (self.gamma, self.focal_type, self.detach_focal)
                want = (weak.requires_grad, strong.requires_grad)
                reduction = self._graph_reduction()
                return KernelStep(kernels, tuple(weak.shape), self.class_weights, options, want, reduction)

            outputs = with_kernel_fallback(lambda: self._graphs(kernel_step, key, logits, held, copied))
        if outputs is None:
            focal = (self.gamma, self.focal_type, self.class_weights, self.detach_focal)

            def torch_step() -> TorchStep:
                return TorchStep(focal, self._graph_reduction())

            outputs = self._graphs(torch_step, key, (), held, (weak, strong) + copied)
        loss, self.last_pass_fraction = outputs
        return loss

    def _graph_reduction(self) -> Reduction:
        """The threshold update and mean of a graphed call, with this loss's options."""
        update = (self.a, self.a_decay, self.b, self.d, self._min_confidence())
        return Reduction(update, self.ohem_ratio, self.compile, self.loss_floor)

    def _compiled_step(
        self, weak: Tensor, strong: Tensor, valid: Tensor | None, focal: tuple[float, int, Tensor | None, bool]
    ) -> Tensor:
        """The whole call as one compiled graph (no data-parallel averaging of the thresholds)."""
        update = (self.a, self.a_decay, self.b, self.d, self._min_confidence()) if self.training else None
        loss, pass_fraction, thresholds = compiled(tufl_step)(
            weak, strong, valid, self.thresholds, self.step, focal, update, self.ohem_ratio, self.loss_floor
        )
        if self.training:
            with torch.no_grad():
                self.thresholds.copy_(thresholds)
                self.step += 1
        return self._kept(loss, pass_fraction)


def _addressable(logits: Tensor, dtype: torch.dtype) -> Tensor:
    """Contiguous ``dtype`` ``logits`` at an address the Triton kernels can read through a
    table: the tensor itself where possible (even a view costs a graphed call host time)."""
    logits = logits.to(dtype).contiguous()
    return logits if logits.data_ptr() % ADDRESS_ALIGNMENT == 0 else logits.clone()
