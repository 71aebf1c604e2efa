"""The fused per-pixel TUFL loss as Triton kernels (CUDA, float32).

On a GPU the torch operations of :mod:`tufl.losses.backends.fused` are each a kernel
launch and a pass over a ``C``-channel map. Here the forward kernel reads each
pixel's ``C`` weak and strong logits once (an online softmax: running maxima, sums
rescaled when a maximum grows) and writes the per-pixel loss ``-w A``, the
confidence ``1 / s1``, the pseudo-class (the first largest weak logit) and, when a
gradient will be wanted, six per-pixel coefficients: the log-normalisers of both
views and the factors of the gradient formulas. The backward kernel reads each
logit once more and writes both gradients, ``g P_j (u_bar - u_j)`` and
``g (Q_j (w S + A w' Q_k) - w lam_j P_j - [j = k] A w' Q_k)``, with ``g`` the
incoming per-pixel gradient: each logit map is read twice and each gradient map
written once per step, the least traffic a forward/backward split allows. The
formulas are those of :mod:`tufl.losses.backends.fused`.

The grid is (pixel blocks, images), and a program loops over the classes, so that
every reduction over the classes stays within a thread and the loads of one class
row are contiguous (vectorised). Triton ships with PyTorch's CUDA builds;
importing this module fails without it, and :mod:`tufl.losses.backends.triton`
then uses the fused backend (as it does, after a warning, if the kernels fail on
first use).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

# Largest class count sent here (the kernels loop over the classes; more would work but is untested).
MAX_CLASSES = 64
# Per-pixel coefficients the forward keeps for the backward: log-normalisers c1, c2 (log P_j = z1_j - c1,
# log Q_j = z2_j - c2), u_bar, w S + A w' Q_k, w, A w' Q_k.
SAVED_COEFFICIENTS = 6

_BLOCKS = [
    triton.Config({"BLOCK": 256}, num_warps=2),
    triton.Config({"BLOCK": 512}, num_warps=4),
    triton.Config({"BLOCK": 1024}, num_warps=4),
    triton.Config({"BLOCK": 1024}, num_warps=8),
    triton.Config({"BLOCK": 2048}, num_warps=8),
]


@triton.autotune(configs=_BLOCKS, key=["num_classes", "pixels", "HAS_WEIGHTS", "SAVE"])
@triton.jit
def _forward_kernel(
    weak_ptr, strong_ptr, weights_ptr,
    loss_ptr, conf_ptr, cls_ptr, saved_ptr,
    pixels, num_classes, gamma,
    BLOCK: tl.constexpr, FOCAL_TYPE: tl.constexpr, GAMMA_KIND: tl.constexpr, DETACH_FOCAL: tl.constexpr,
    HAS_WEIGHTS: tl.constexpr, SAVE: tl.constexpr,
):
    """One program: ``BLOCK`` pixels of one image, one pass over the classes.

    With ``e = exp(z - max z)`` it accumulates s1, s2, L = sum lam e1, W = sum lam e1
    (z1 - max z1) and X = sum lam e1 (z2 - max z2), rescaling them when a maximum grows.
    """
    image = tl.program_id(1).to(tl.int64)
    pixel = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = pixel < pixels
    row = image * num_classes * pixels + pixel  # class 0 of each pixel; class c is c * pixels further

    top1 = tl.load(weak_ptr + row, mask=in_range, other=0.0)
    top2 = tl.load(strong_ptr + row, mask=in_range, other=0.0)
    lam = 1.0
    if HAS_WEIGHTS:
        lam = tl.load(weights_ptr)
    s1 = tl.full([BLOCK], 1.0, tl.float32)
    s2 = tl.full([BLOCK], 1.0, tl.float32)
    lam_sum = tl.zeros([BLOCK], tl.float32) + lam
    weak_sum = tl.zeros([BLOCK], tl.float32)
    strong_sum = tl.zeros([BLOCK], tl.float32)
    k = tl.zeros([BLOCK], tl.int32)
    z2_k = top2
    for c in range(1, num_classes):
        z1 = tl.load(weak_ptr + row + c * pixels, mask=in_range, other=0.0)
        z2 = tl.load(strong_ptr + row + c * pixels, mask=in_range, other=0.0)
        if HAS_WEIGHTS:
            lam = tl.load(weights_ptr + c)
        # Weak view: one exp gives either the rescale of the sums (new maximum) or this class's term.
        grows = z1 > top1
        t1 = tl.exp(-tl.abs(z1 - top1))
        scale1 = tl.where(grows, t1, 1.0)
        e1 = tl.where(grows, 1.0, t1)
        shift1 = tl.where(grows, z1 - top1, 0.0)
        weak_sum = (weak_sum - shift1 * lam_sum) * scale1
        strong_sum *= scale1
        lam_sum *= scale1
        s1 = s1 * scale1 + e1
        top1 = tl.where(grows, z1, top1)
        k = tl.where(grows, c, k)
        z2_k = tl.where(grows, z2, z2_k)
        # Strong view.
        grows2 = z2 > top2
        t2 = tl.exp(-tl.abs(z2 - top2))
        shift2 = tl.where(grows2, z2 - top2, 0.0)
        s2 = s2 * tl.where(grows2, t2, 1.0) + tl.where(grows2, 1.0, t2)
        top2 = tl.where(grows2, z2, top2)
        strong_sum -= shift2 * lam_sum
        # This class's terms.
        lam_e1 = lam * e1
        lam_sum += lam_e1
        weak_sum += lam_e1 * (z1 - top1)
        strong_sum += lam_e1 * (z2 - top2)

    inv1 = 1.0 / s1
    log_s1 = tl.log(s1)
    log_s2 = tl.log(s2)
    weight_sum = lam_sum * inv1  # S = sum lam P
    cross = strong_sum * inv1 - weight_sum * log_s2  # A = sum lam P log Q
    q_k = tl.exp(z2_k - top2) / s2
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
    tl.store(loss_ptr + at_pixel, -w * cross, mask=in_range)
    tl.store(conf_ptr + at_pixel, inv1, mask=in_range)
    tl.store(cls_ptr + at_pixel, k.to(tl.int64), mask=in_range)
    if SAVE:
        # dl/dz1_j = P_j (u_bar - u_j), u_j = lam_j (log P_j + 1), u_bar = sum_c P_c u_c;
        # dl/dz2_j = Q_j (w S + A w' Q_k) - w lam_j P_j - [j = k] A w' Q_k, with w' = dw/dQ_k = -slope.
        cross_slope_q = -cross * slope * q_k
        saved = saved_ptr + image * 6 * pixels + pixel
        tl.store(saved, top1 + log_s1, mask=in_range)
        tl.store(saved + pixels, top2 + log_s2, mask=in_range)
        tl.store(saved + 2 * pixels, (weak_sum - (log_s1 - 1.0) * lam_sum) * inv1, mask=in_range)
        tl.store(saved + 3 * pixels, w * weight_sum + cross_slope_q, mask=in_range)
        tl.store(saved + 4 * pixels, w, mask=in_range)
        tl.store(saved + 5 * pixels, cross_slope_q, mask=in_range)


@triton.autotune(configs=_BLOCKS, key=["num_classes", "pixels", "HAS_WEIGHTS", "WANT_WEAK", "WANT_STRONG"])
@triton.jit
def _backward_kernel(
    weak_ptr, strong_ptr, weights_ptr, cls_ptr, saved_ptr,
    grad_loss_ptr, grad_weak_ptr, grad_strong_ptr,
    pixels, num_classes,
    BLOCK: tl.constexpr, HAS_WEIGHTS: tl.constexpr, WANT_WEAK: tl.constexpr, WANT_STRONG: tl.constexpr,
):
    """One program: ``BLOCK`` pixels of one image; the gradients of ``sum(grad_loss * loss)``,
    one class row at a time, from the logits and the forward's coefficients."""
    image = tl.program_id(1).to(tl.int64)
    pixel = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = pixel < pixels
    row = image * num_classes * pixels + pixel
    at_pixel = image * pixels + pixel
    g = tl.load(grad_loss_ptr + at_pixel, mask=in_range, other=0.0)
    k = tl.load(cls_ptr + at_pixel, mask=in_range, other=0).to(tl.int32)
    saved = saved_ptr + image * 6 * pixels + pixel
    log_norm1 = tl.load(saved, mask=in_range, other=0.0)
    log_norm2 = tl.load(saved + pixels, mask=in_range, other=0.0)
    u_bar = tl.load(saved + 2 * pixels, mask=in_range, other=0.0)
    q_factor = g * tl.load(saved + 3 * pixels, mask=in_range, other=0.0)
    p_factor = g * tl.load(saved + 4 * pixels, mask=in_range, other=0.0)
    at_k = g * tl.load(saved + 5 * pixels, mask=in_range, other=0.0)
    for c in range(num_classes):
        lam = 1.0
        if HAS_WEIGHTS:
            lam = tl.load(weights_ptr + c)
        z1 = tl.load(weak_ptr + row + c * pixels, mask=in_range, other=0.0)
        log_p = z1 - log_norm1
        p = tl.exp(log_p)
        if WANT_WEAK:
            tl.store(grad_weak_ptr + row + c * pixels, g * p * (u_bar - lam * (log_p + 1.0)), mask=in_range)
        if WANT_STRONG:
            q = tl.exp(tl.load(strong_ptr + row + c * pixels, mask=in_range, other=0.0) - log_norm2)
            grad = q * q_factor - lam * p * p_factor - tl.where(k == c, at_k, 0.0)
            tl.store(grad_strong_ptr + row + c * pixels, grad, mask=in_range)


def _grid(batch: int, pixels: int):
    def grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(pixels, meta["BLOCK"]), batch)

    return grid


def launch_forward(
    logits: tuple[Tensor, Tensor],
    shape: tuple[int, int, int],
    weights: Tensor | None,
    options: tuple[float, int, bool],
    save: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Per-pixel ``(loss, conf, cls, coefficients)`` of the contiguous float32 ``[B, C, N]``
    ``(weak, strong)`` logits. The coefficients ``[B, 6, N]`` for :func:`launch_backward`
    are computed if ``save``, else ``None``.
    """
    batch, num_classes, pixels = shape
    gamma, focal_type, detach_focal = options
    weak, strong = logits
    loss = torch.empty((batch, pixels), dtype=torch.float32, device=weak.device)
    conf = torch.empty_like(loss)
    cls = torch.empty((batch, pixels), dtype=torch.int64, device=weak.device)
    saved = torch.empty((batch, SAVED_COEFFICIENTS, pixels), dtype=torch.float32, device=weak.device) if save else None
    _forward_kernel[_grid(batch, pixels)](
        weak, strong, loss if weights is None else weights,
        loss, conf, cls, loss if saved is None else saved,
        pixels, num_classes, float(gamma),
        FOCAL_TYPE=int(focal_type), GAMMA_KIND=0 if gamma == 0.0 else 2 if gamma == 2.0 else 1,
        DETACH_FOCAL=bool(detach_focal), HAS_WEIGHTS=weights is not None, SAVE=save,
    )
    return loss, conf, cls, saved


def launch_backward(
    logits: tuple[Tensor, Tensor],
    shape: tuple[int, int, int],
    weights: Tensor | None,
    cls: Tensor,
    saved: Tensor,
    grad_loss: Tensor,
    want: tuple[bool, bool],
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients ``(weak, strong)`` of ``sum(grad_loss * loss)`` (``None`` where not in ``want``),
    from the logits (as in :func:`launch_forward`) and the forward's ``cls`` and coefficients."""
    batch, num_classes, pixels = shape
    weak, strong = logits
    grad_weak = torch.empty(shape, dtype=torch.float32, device=saved.device) if want[0] else None
    grad_strong = torch.empty(shape, dtype=torch.float32, device=saved.device) if want[1] else None
    if grad_weak is None and grad_strong is None:
        return None, None
    _backward_kernel[_grid(batch, pixels)](
        weak, strong, saved if weights is None else weights, cls, saved,
        grad_loss.contiguous(),
        saved if grad_weak is None else grad_weak, saved if grad_strong is None else grad_strong,
        pixels, num_classes,
        HAS_WEIGHTS=weights is not None, WANT_WEAK=want[0], WANT_STRONG=want[1],
    )
    return grad_weak, grad_strong


class FocalConsistencyTriton(torch.autograd.Function):
    """Per-pixel loss, confidence and pseudo-class of contiguous float32 ``[B, C, N]`` CUDA logits."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, weak: Tensor, strong: Tensor, class_weights: Tensor | None, gamma: float, focal_type: int,
        detach_focal: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        weights = None if class_weights is None else class_weights.to(weak).contiguous()
        save = any(ctx.needs_input_grad[:2])
        loss, conf, cls, saved = launch_forward(
            (weak, strong), tuple(weak.shape), weights, (gamma, focal_type, detach_focal), save
        )
        ctx.save_for_backward(weak, strong, weights, cls, saved)
        ctx.mark_non_differentiable(conf, cls)
        return loss, conf, cls

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: Tensor, _grad_conf: Tensor, _grad_cls: Tensor):  # type: ignore[override]
        weak, strong, weights, cls, saved = ctx.saved_tensors
        want = (ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        grad_weak, grad_strong = launch_backward(
            (weak, strong), tuple(weak.shape), weights, cls, saved, grad_loss, want
        )
        return grad_weak, grad_strong, None, None, None, None
