"""The fused per-pixel TUFL loss as one Triton kernel (CUDA, float32).

On a GPU the torch operations of :mod:`tufl.losses.focal_terms` are each a kernel
launch and a pass over a 19-channel map; at training sizes their launches and memory
passes, not the arithmetic, set the time. This kernel reads each pixel's ``C`` weak
and strong logits once and writes everything :class:`~tufl.losses.focal_terms`'s
autograd function needs, with the same conventions (see that module for the
formulas): the per-pixel loss ``-w A``, ``1 / s1`` (the confidence), the pseudo-class
(the first class where ``exp(z1 - max z1)`` is 1), the weak view's gradient map
times ``-s1`` and the strong view's gradient map.

Triton ships with PyTorch's CUDA builds; importing this module fails without it,
and :func:`tufl.losses.focal_terms.focal_consistency_terms` then uses torch
operations.
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

# Largest class count handled here (a program keeps [classes, pixels] tiles in registers).
MAX_CLASSES = 64


@triton.autotune(
    configs=[
        triton.Config({"BLOCK": 32}, num_warps=2),
        triton.Config({"BLOCK": 64}, num_warps=4),
        triton.Config({"BLOCK": 128}, num_warps=4),
        triton.Config({"BLOCK": 128}, num_warps=8),
        triton.Config({"BLOCK": 256}, num_warps=8),
    ],
    key=["num_classes", "pixels", "HAS_WEIGHTS", "WANT_WEAK", "WANT_STRONG"],
)
@triton.jit
def _focal_kernel(
    weak_ptr, strong_ptr, weights_ptr,
    loss_ptr, conf_ptr, cls_ptr, grad_weak_ptr, grad_strong_ptr,
    pixels, total_pixels, num_classes,
    gamma,
    CLASS_BLOCK: tl.constexpr, BLOCK: tl.constexpr, FOCAL_TYPE: tl.constexpr, GAMMA_KIND: tl.constexpr,
    DETACH_FOCAL: tl.constexpr,
    HAS_WEIGHTS: tl.constexpr, WANT_WEAK: tl.constexpr, WANT_STRONG: tl.constexpr,
):
    """One program: ``BLOCK`` pixels (flattened over the batch) x all classes."""
    flat = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    in_range = flat < total_pixels
    image = flat // pixels
    pixel = flat - image * pixels
    classes = tl.arange(0, CLASS_BLOCK)
    is_class = classes < num_classes
    offsets = (image * num_classes * pixels + pixel)[None, :] + (classes.to(tl.int64) * pixels)[:, None]
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

    # Strong view: log Q = z2 - log sum exp z2, Q = e2 / s2.
    top2 = tl.max(z2, axis=0)
    shifted2 = z2 - top2[None, :]
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
    tl.store(loss_ptr + flat, -w * cross, mask=in_range)
    tl.store(conf_ptr + flat, inv1, mask=in_range)
    tl.store(cls_ptr + flat, k.to(tl.int64), mask=in_range)

    if WANT_WEAK:
        # e1_j (u_j - u_bar), u_j = lam_j (log P_j + 1), u_bar = sum_c P_c u_c.
        log_p1 = shifted1 - tl.log(s1)[None, :] + 1.0
        u = tl.where(mask, lam * log_p1, 0.0)
        u_bar = tl.sum(e1 * u, axis=0) * inv1
        tl.store(grad_weak_ptr + offsets, e1 * (u - u_bar[None, :]), mask=mask)
    if WANT_STRONG:
        # -w lam_j P_j + Q_j (w S + A w' Q_k) - [j = k] A w' Q_k, with w' = dw/dQ_k = -slope.
        weight_sum = tl.sum(lam_e1, axis=0) * inv1  # S
        cross_slope_q = -cross * slope * q_k  # A w' Q_k
        q = e2 * inv2[None, :]
        grad = q * (w * weight_sum + cross_slope_q)[None, :] - lam_e1 * (w * inv1)[None, :]
        grad = grad - tl.where(is_k, cross_slope_q[None, :], 0.0)
        tl.store(grad_strong_ptr + offsets, grad, mask=mask)


def focal_maps(
    weak: Tensor,
    strong: Tensor,
    class_weights: Tensor | None,
    gamma: float,
    focal_type: int,
    detach_focal: bool,
    loss: Tensor,
    conf: Tensor,
    cls: Tensor,
    grad_weak: Tensor | None,
    grad_strong: Tensor | None,
) -> None:
    """Fill ``loss``, ``conf``, ``cls`` (``[B, 1, N]``) and the gradient maps (``[B, C, N]`` or ``None``).

    ``weak`` and ``strong`` are contiguous float32 ``[B, C, N]`` on one CUDA device
    with ``C <= MAX_CLASSES``; ``class_weights`` is ``[C]`` or ``None``.
    """
    batch, num_classes, pixels = weak.shape
    total = batch * pixels
    weights = None if class_weights is None else class_weights.to(weak).contiguous()
    gamma_kind = 0 if gamma == 0.0 else 2 if gamma == 2.0 else 1

    def grid(meta: dict) -> tuple[int]:
        return (triton.cdiv(total, meta["BLOCK"]),)

    _focal_kernel[grid](
        weak, strong, weak if weights is None else weights,
        loss, conf, cls, loss if grad_weak is None else grad_weak, loss if grad_strong is None else grad_strong,
        pixels, total, num_classes,
        float(gamma),
        CLASS_BLOCK=max(triton.next_power_of_2(num_classes), 2), FOCAL_TYPE=int(focal_type), GAMMA_KIND=gamma_kind,
        DETACH_FOCAL=bool(detach_focal), HAS_WEIGHTS=weights is not None,
        WANT_WEAK=grad_weak is not None, WANT_STRONG=grad_strong is not None,
    )
