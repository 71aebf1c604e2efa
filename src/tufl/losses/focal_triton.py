"""The fused per-pixel TUFL loss as Triton kernels (CUDA, float32).

On a GPU the torch operations of :mod:`tufl.losses.focal_terms` are each a kernel
launch and a pass over a ``C``-channel map. Here one kernel reads each pixel's
``C`` weak and strong logits once and writes the per-pixel loss ``-w A``, the
confidence ``1 / s1`` and the pseudo-class (the first class where
``exp(z1 - max z1)`` is 1); the backward pass runs the same kernel again, which
recomputes the pixel's terms from the logits and writes both gradients scaled by
the incoming per-pixel gradient. Recomputing reads the logits once more but never
writes or rereads the ``C``-channel gradient maps of the forward pass: less memory
traffic, and no map kept between the passes. The formulas are those of
:mod:`tufl.losses.focal_terms`.

The grid is (pixel blocks, images), and a program loops over the classes, so that
every reduction over the classes stays within a thread and the loads of one class
row are contiguous (vectorised). The rows are read from memory once per pass;
the later passes of a block find them in the cache. Triton ships with PyTorch's
CUDA builds; importing this module fails without it, and
:func:`tufl.losses.focal_terms.focal_consistency_terms` then uses torch operations
(as it does, after a warning, if the kernels fail on first use).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

# Largest class count sent here (the kernels loop over the classes; more would work but is untested).
MAX_CLASSES = 64


@triton.autotune(
    configs=[
        triton.Config({"BLOCK": 256}, num_warps=2),
        triton.Config({"BLOCK": 512}, num_warps=4),
        triton.Config({"BLOCK": 1024}, num_warps=4),
        triton.Config({"BLOCK": 1024}, num_warps=8),
        triton.Config({"BLOCK": 2048}, num_warps=8),
    ],
    key=["num_classes", "pixels", "HAS_WEIGHTS", "BACKWARD", "WANT_WEAK", "WANT_STRONG"],
)
@triton.jit
def _focal_kernel(
    weak_ptr, strong_ptr, weights_ptr,
    loss_ptr, conf_ptr, cls_ptr,
    grad_loss_ptr, grad_weak_ptr, grad_strong_ptr,
    pixels, num_classes, gamma,
    BLOCK: tl.constexpr, FOCAL_TYPE: tl.constexpr, GAMMA_KIND: tl.constexpr, DETACH_FOCAL: tl.constexpr,
    HAS_WEIGHTS: tl.constexpr, BACKWARD: tl.constexpr, WANT_WEAK: tl.constexpr, WANT_STRONG: tl.constexpr,
):
    """One program: ``BLOCK`` pixels of one image; loops over the classes, one row at a time.

    Forward (``BACKWARD`` false): writes loss, confidence and pseudo-class. Backward:
    writes the gradients of ``sum(grad_loss * loss)`` with respect to the logits.
    """
    image = tl.program_id(1).to(tl.int64)
    pixel = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = pixel < pixels
    row = image * num_classes * pixels + pixel  # class 0 of each pixel; class c is c * pixels further

    # Pass 1: maxima of both views, and the first class holding the weak maximum.
    top1 = tl.full([BLOCK], float("-inf"), tl.float32)
    top2 = tl.full([BLOCK], float("-inf"), tl.float32)
    k = tl.zeros([BLOCK], tl.int32)
    for c in range(num_classes):
        z1 = tl.load(weak_ptr + row + c * pixels, mask=in_range, other=0.0)
        z2 = tl.load(strong_ptr + row + c * pixels, mask=in_range, other=0.0)
        k = tl.where(z1 > top1, c, k)
        top1 = tl.maximum(top1, z1)
        top2 = tl.maximum(top2, z2)

    # Pass 2: with e = exp(z - max z), the sums s1, s2, S s1 = sum lam e1, sum lam e1 (z1 - max),
    # sum lam e1 (z2 - max) and e2 at the pseudo-class.
    s1 = tl.zeros([BLOCK], tl.float32)
    s2 = tl.zeros([BLOCK], tl.float32)
    lam_sum = tl.zeros([BLOCK], tl.float32)
    weak_sum = tl.zeros([BLOCK], tl.float32)
    strong_sum = tl.zeros([BLOCK], tl.float32)
    e2_k = tl.zeros([BLOCK], tl.float32)
    for c in range(num_classes):
        d1 = tl.load(weak_ptr + row + c * pixels, mask=in_range, other=0.0) - top1
        d2 = tl.load(strong_ptr + row + c * pixels, mask=in_range, other=0.0) - top2
        e1 = tl.exp(d1)
        e2 = tl.exp(d2)
        lam_e1 = e1
        if HAS_WEIGHTS:
            lam_e1 = tl.load(weights_ptr + c) * e1
        s1 += e1
        s2 += e2
        lam_sum += lam_e1
        weak_sum += lam_e1 * d1
        strong_sum += lam_e1 * d2
        e2_k = tl.where(k == c, e2, e2_k)
    inv1 = 1.0 / s1
    inv2 = 1.0 / s2
    log_s1 = tl.log(s1)
    weight_sum = lam_sum * inv1  # S = sum lam P
    cross = strong_sum * inv1 - weight_sum * tl.log(s2)  # A = sum lam P log Q
    q_k = e2_k * inv2
    if FOCAL_TYPE == 1:
        base = 1.0 - q_k
    else:
        base = inv1 - q_k
    # w = |base|^gamma and its slope dw/dbase (0 where base = 0).
    if GAMMA_KIND == 0:
        w = tl.full([BLOCK], 1.0, tl.float32)
        slope = tl.zeros([BLOCK], tl.float32)
    elif GAMMA_KIND == 2:
        w = base * base
        slope = 2.0 * base
    else:
        magnitude = tl.abs(base)
        log_magnitude = tl.log2(magnitude)
        w = tl.where(magnitude > 0, tl.exp2(gamma * log_magnitude), 0.0)
        sign = tl.where(base > 0, 1.0, -1.0)
        slope = tl.where(magnitude > 0, gamma * sign * tl.exp2((gamma - 1.0) * log_magnitude), 0.0)
    if DETACH_FOCAL:
        slope = tl.zeros([BLOCK], tl.float32)

    at_pixel = image * pixels + pixel
    if not BACKWARD:
        tl.store(loss_ptr + at_pixel, -w * cross, mask=in_range)
        tl.store(conf_ptr + at_pixel, inv1, mask=in_range)
        tl.store(cls_ptr + at_pixel, k.to(tl.int64), mask=in_range)
    else:
        g = tl.load(grad_loss_ptr + at_pixel, mask=in_range, other=0.0)
        # dl/dz1_j = P_j (u_bar - u_j), u_j = lam_j (log P_j + 1), u_bar = sum_c P_c u_c.
        u_bar = (weak_sum - (log_s1 - 1.0) * lam_sum) * inv1
        weak_scale = g * inv1
        # dl/dz2_j = Q_j (w S + A w' Q_k) - [j = k] A w' Q_k - w lam_j P_j, with w' = dw/dQ_k = -slope.
        cross_slope_q = -cross * slope * q_k  # A w' Q_k
        strong_common = g * inv2 * (w * weight_sum + cross_slope_q)
        strong_lam = g * w * inv1
        for c in range(num_classes):
            lam = 1.0
            if HAS_WEIGHTS:
                lam = tl.load(weights_ptr + c)
            if WANT_WEAK:
                d1 = tl.load(weak_ptr + row + c * pixels, mask=in_range, other=0.0) - top1
                u = lam * (d1 - log_s1 + 1.0)
                tl.store(grad_weak_ptr + row + c * pixels, tl.exp(d1) * (u_bar - u) * weak_scale, mask=in_range)
            if WANT_STRONG:
                e1 = tl.exp(tl.load(weak_ptr + row + c * pixels, mask=in_range, other=0.0) - top1)
                e2 = tl.exp(tl.load(strong_ptr + row + c * pixels, mask=in_range, other=0.0) - top2)
                grad = e2 * strong_common - lam * e1 * strong_lam - tl.where(k == c, g * cross_slope_q, 0.0)
                tl.store(grad_strong_ptr + row + c * pixels, grad, mask=in_range)


def _launch(
    weak: Tensor,
    strong: Tensor,
    weights: Tensor | None,
    options: tuple[float, int, bool],
    outputs: tuple[Tensor, Tensor, Tensor] | None,
    backward: tuple[Tensor, Tensor | None, Tensor | None] | None,
) -> None:
    """Run the kernel over ``[B, C, N]`` logits: forward into ``outputs = (loss, conf, cls)``, or
    backward with ``backward = (grad_loss, grad_weak, grad_strong)`` (``None`` maps are skipped)."""
    gamma, focal_type, detach_focal = options
    batch, num_classes, pixels = weak.shape
    loss, conf, cls = outputs if outputs is not None else (weak, weak, weak)  # unused placeholders
    grad_loss, grad_weak, grad_strong = backward if backward is not None else (weak, None, None)

    def grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(pixels, meta["BLOCK"]), batch)

    _focal_kernel[grid](
        weak, strong, weak if weights is None else weights,
        loss, conf, cls,
        grad_loss, weak if grad_weak is None else grad_weak, weak if grad_strong is None else grad_strong,
        pixels, num_classes, float(gamma),
        FOCAL_TYPE=int(focal_type),
        GAMMA_KIND=0 if gamma == 0.0 else 2 if gamma == 2.0 else 1, DETACH_FOCAL=bool(detach_focal),
        HAS_WEIGHTS=weights is not None, BACKWARD=backward is not None,
        WANT_WEAK=grad_weak is not None, WANT_STRONG=grad_strong is not None,
    )


class FocalConsistencyTriton(torch.autograd.Function):
    """Per-pixel loss, confidence and pseudo-class of contiguous float32 ``[B, C, N]`` CUDA logits."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, weak: Tensor, strong: Tensor, class_weights: Tensor | None, gamma: float, focal_type: int,
        detach_focal: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        batch, _, pixels = weak.shape
        loss = torch.empty((batch, pixels), dtype=weak.dtype, device=weak.device)
        conf = torch.empty_like(loss)
        cls = torch.empty((batch, pixels), dtype=torch.int64, device=weak.device)
        weights = None if class_weights is None else class_weights.to(weak).contiguous()
        options = (gamma, focal_type, detach_focal)
        _launch(weak, strong, weights, options, (loss, conf, cls), None)
        ctx.options = options
        ctx.save_for_backward(weak, strong, weights)
        ctx.mark_non_differentiable(conf, cls)
        return loss, conf, cls

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: Tensor, _grad_conf: Tensor, _grad_cls: Tensor):  # type: ignore[override]
        weak, strong, weights = ctx.saved_tensors
        grad_weak = torch.empty_like(weak) if ctx.needs_input_grad[0] else None
        grad_strong = torch.empty_like(strong) if ctx.needs_input_grad[1] else None
        if grad_weak is not None or grad_strong is not None:
            _launch(weak, strong, weights, ctx.options, None, (grad_loss.contiguous(), grad_weak, grad_strong))
        return grad_weak, grad_strong, None, None, None, None
