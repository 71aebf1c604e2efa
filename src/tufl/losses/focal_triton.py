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

The grid is (pixel blocks, images): along a block the logits of one class are
contiguous, so the loads and stores are vectorised. Triton ships with PyTorch's
CUDA builds; importing this module fails without it, and
:func:`tufl.losses.focal_terms.focal_consistency_terms` then uses torch operations.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

# Largest class count handled here (a program keeps [classes, pixels] tiles in registers).
MAX_CLASSES = 64


@triton.autotune(
    configs=[
        triton.Config({"BLOCK": 64}, num_warps=2),
        triton.Config({"BLOCK": 128}, num_warps=4),
        triton.Config({"BLOCK": 256}, num_warps=4),
        triton.Config({"BLOCK": 256}, num_warps=8),
        triton.Config({"BLOCK": 512}, num_warps=8),
    ],
    key=["num_classes", "pixels", "HAS_WEIGHTS", "BACKWARD", "WANT_WEAK", "WANT_STRONG"],
)
@triton.jit
def _focal_kernel(
    weak_ptr, strong_ptr, weights_ptr,
    loss_ptr, conf_ptr, cls_ptr,
    grad_loss_ptr, grad_weak_ptr, grad_strong_ptr,
    pixels, num_classes, gamma,
    CLASS_BLOCK: tl.constexpr, BLOCK: tl.constexpr, FOCAL_TYPE: tl.constexpr, GAMMA_KIND: tl.constexpr,
    DETACH_FOCAL: tl.constexpr, HAS_WEIGHTS: tl.constexpr,
    BACKWARD: tl.constexpr, WANT_WEAK: tl.constexpr, WANT_STRONG: tl.constexpr,
):
    """One program: ``BLOCK`` pixels of one image x all classes.

    Forward (``BACKWARD`` false): writes loss, confidence and pseudo-class. Backward:
    writes the gradients of ``sum(grad_loss * loss)`` with respect to the logits.
    """
    image = tl.program_id(1).to(tl.int64)
    pixel = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = pixel < pixels
    classes = tl.arange(0, CLASS_BLOCK)
    is_class = classes < num_classes
    offsets = image * num_classes * pixels + (classes.to(tl.int64) * pixels)[:, None] + pixel[None, :]
    mask = is_class[:, None] & in_range[None, :]
    z1 = tl.load(weak_ptr + offsets, mask=mask, other=float("-inf"))
    z2 = tl.load(strong_ptr + offsets, mask=mask, other=float("-inf"))
    if HAS_WEIGHTS:
        lam = tl.load(weights_ptr + classes, mask=is_class, other=0.0)[:, None]
    else:
        lam = tl.where(is_class, 1.0, 0.0)[:, None]

    # Weak view: e1 = exp(z1 - max z1) (exactly 1 at the maximum), P = e1 / s1.
    top1 = tl.max(z1, axis=0)
    shifted1 = z1 - top1[None, :]
    e1 = tl.where(mask, tl.exp(shifted1), 0.0)
    s1 = tl.sum(e1, axis=0)
    inv1 = 1.0 / s1
    first = tl.min(tl.where(mask & (e1 == 1.0), classes[:, None], CLASS_BLOCK), axis=0)
    k = tl.minimum(first, num_classes - 1)  # NaN logits: some class in range
    is_k = classes[:, None] == k[None, :]

    # Strong view: log Q = z2 - max z2 - log s2, Q = e2 / s2.
    shifted2 = z2 - tl.max(z2, axis=0)[None, :]
    e2 = tl.where(mask, tl.exp(shifted2), 0.0)
    s2 = tl.sum(e2, axis=0)
    inv2 = 1.0 / s2
    log_q = shifted2 - tl.log(s2)[None, :]

    lam_e1 = lam * e1  # lam_c P_c s1
    cross = tl.sum(tl.where(mask, lam_e1 * log_q, 0.0), axis=0) * inv1  # A = sum lam P log Q
    q_k = tl.sum(tl.where(is_k, e2, 0.0), axis=0) * inv2
    if FOCAL_TYPE == 1:
        base = 1.0 - q_k
    else:
        base = inv1 - q_k
    # w = |base|^gamma and its slope dw/dbase (0 where base = 0).
    if GAMMA_KIND == 0:
        w = tl.full(base.shape, 1.0, tl.float32)
        slope = tl.zeros(base.shape, tl.float32)
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
        slope = tl.zeros(base.shape, tl.float32)

    at_pixel = image * pixels + pixel
    if not BACKWARD:
        tl.store(loss_ptr + at_pixel, -w * cross, mask=in_range)
        tl.store(conf_ptr + at_pixel, inv1, mask=in_range)
        tl.store(cls_ptr + at_pixel, k.to(tl.int64), mask=in_range)
    else:
        g = tl.load(grad_loss_ptr + at_pixel, mask=in_range, other=0.0)
        if WANT_WEAK:
            # dl/dz1_j = P_j (u_bar - u_j), u_j = lam_j (log P_j + 1), u_bar = sum_c P_c u_c.
            u = tl.where(mask, lam * (shifted1 - tl.log(s1)[None, :] + 1.0), 0.0)
            u_bar = tl.sum(e1 * u, axis=0) * inv1
            tl.store(grad_weak_ptr + offsets, e1 * (u_bar[None, :] - u) * (g * inv1)[None, :], mask=mask)
        if WANT_STRONG:
            # dl/dz2_j = -w lam_j P_j + Q_j (w S + A w' Q_k) - [j = k] A w' Q_k, w' = dw/dQ_k = -slope.
            weight_sum = tl.sum(lam_e1, axis=0) * inv1  # S
            cross_slope_q = -cross * slope * q_k  # A w' Q_k
            grad = e2 * (inv2 * (w * weight_sum + cross_slope_q))[None, :] - lam_e1 * (w * inv1)[None, :]
            grad = grad - tl.where(is_k, cross_slope_q[None, :], 0.0)
            tl.store(grad_strong_ptr + offsets, grad * g[None, :], mask=mask)


def _launch(weak: Tensor, strong: Tensor, weights: Tensor | None, options: tuple[float, int, bool],
            outputs: tuple[Tensor, Tensor, Tensor] | None, backward: tuple[Tensor, Tensor | None, Tensor | None] | None,
            ) -> None:
    """Run the kernel over ``[B, C, N]`` logits: forward into ``outputs`` or backward into ``backward``."""
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
        CLASS_BLOCK=max(triton.next_power_of_2(num_classes), 2), FOCAL_TYPE=int(focal_type),
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
