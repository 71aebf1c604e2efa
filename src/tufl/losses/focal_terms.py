"""Fused per-pixel TUFL loss: one pass over the logits gives the loss and its gradient.

For logits ``z1`` (weak view) and ``z2`` (strong view) PAPER.md defines, per pixel,

    l = sum_c lam_c [ sg(P_c) (log sg(P_c) - w log Q_c) - P_c log P_c ],

with ``P = softmax(z1)``, ``Q = softmax(z2)``, pseudo-class ``k = argmax P`` and focal
factor ``w = |1 - Q_k|^gamma`` (type 1) or ``|sg(P_k) - Q_k|^gamma`` (type 2). Its value
is ``-w A`` with ``A = sum_c lam_c P_c log Q_c``; its gradients are

    dl/dz1_j = P_j (u_bar - u_j),           u_j = lam_j (log P_j + 1),  u_bar = sum_c P_c u_c
    dl/dz2_j = -w lam_j P_j + Q_j (w S + A w' Q_k) - [j = k] A w' Q_k,
                                              S = sum_c lam_c P_c,  w' = dw/dQ_k

(``w' = 0`` when the focal factor is detached). Each pixel's loss depends on that
pixel's logits only, so the forward pass writes the per-pixel Jacobians ``G1``, ``G2``
(the gradient maps, computed with a few fused passes while the logits are at hand)
and the backward pass only scales them in place by the incoming per-pixel gradient;
as a consequence the result can be back-propagated once. ``log_softmax`` is never
materialised: with ``e = exp(z - max z)`` and ``s = sum e``, ``P = e / s`` and
``log Q = z2 - max z2 - log s2`` enter through per-pixel scalars.

On the CPU the pixels are processed in cache-sized chunks with reused scratch
buffers (fresh large tensors pay page faults on every call); elsewhere the whole
batch is one chunk.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# Elements (classes x pixels) of one chunk on the CPU: ~2 MiB per float32 map, so
# the handful of temporaries of a chunk stays in the L3 cache.
CPU_CHUNK_ELEMENTS = 1 << 19
_LOG2_E = 1.4426950408889634


def chunk_pixels(device: torch.device, num_classes: int) -> int | None:
    """Pixels per chunk for ``device``: cache-sized on the CPU, ``None`` (all) elsewhere."""
    if device.type != "cpu":
        return None
    return max(1, CPU_CHUNK_ELEMENTS // num_classes)


def _chunks(batch: int, pixels: int, per_chunk: int | None) -> Iterator[tuple[slice, slice]]:
    """``(batch slice, pixel slice)`` pairs covering ``[batch, pixels]``."""
    if per_chunk is None:
        yield slice(0, batch), slice(0, pixels)
        return
    if per_chunk >= pixels:
        images = per_chunk // pixels
        for b in range(0, batch, images):
            yield slice(b, min(b + images, batch)), slice(0, pixels)
        return
    for b in range(batch):
        for s in range(0, pixels, per_chunk):
            yield slice(b, b + 1), slice(s, min(s + per_chunk, pixels))


class _Workspace:
    """Reusable flat buffers for the chunk temporaries.

    Fresh multi-MiB tensors cost page faults on every allocation; reusing a few
    buffers across the chunks of one call avoids them.
    """

    def __init__(self, count: int, numel: int, like: Tensor) -> None:
        self._buffers = [like.new_empty(numel) for _ in range(count)]

    def view(self, index: int, shape: torch.Size) -> Tensor:
        return self._buffers[index][: shape.numel()].view(shape)


def _shifted_exp(logits: Tensor, out: Tensor) -> Tensor:
    """Write ``exp(z - m)`` into ``out`` (exactly 1 at the maximum) and return ``m = max_c z``.

    Uses ``exp2`` of the scaled shift, about twice as fast as ``exp`` on the CPU.
    """
    top = logits.amax(dim=1, keepdim=True)
    torch.sub(logits, top, out=out).mul_(_LOG2_E).exp2_()
    return top


def _dot(a: Tensor, b: Tensor, scratch: Tensor) -> Tensor:
    """``sum_c a_c b_c`` over dim 1 (keepdim), with the products written into ``scratch``."""
    return torch.mul(a, b, out=scratch).sum(dim=1, keepdim=True)


def _focal_factor(base: Tensor, gamma: float, detach_focal: bool) -> tuple[Tensor, Tensor]:
    """``w = |base|^gamma`` and ``w' = dw/dQ_k = -gamma |base|^(gamma-1) sign(base)`` (0 if detached)."""
    if gamma == 0.0:
        return torch.ones_like(base), torch.zeros_like(base)
    magnitude = base.abs()
    w = magnitude.pow(gamma)
    if detach_focal:
        return w, torch.zeros_like(base)
    slope = magnitude.pow_(gamma - 1.0).mul_(base.sign())
    if gamma < 1.0:  # |0|^(gamma - 1) is infinite: take the subgradient 0 there
        slope = torch.where(base == 0, 0.0, slope)
    return w, slope.mul_(-gamma)


class _FocalConsistency(torch.autograd.Function):
    """Per-pixel loss, confidence and pseudo-class of ``[B, C, N]`` logits (see module doc)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        weak: Tensor,
        strong: Tensor,
        class_weights: Tensor | None,
        gamma: float,
        focal_type: int,
        detach_focal: bool,
        want_grads: tuple[bool, bool],
        per_chunk: int | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        batch, num_classes, pixels = weak.shape
        loss = weak.new_empty((batch, 1, pixels))
        conf = weak.new_empty((batch, 1, pixels))
        cls = torch.empty((batch, 1, pixels), dtype=torch.int64, device=weak.device)
        grad_weak = torch.empty_like(weak) if want_grads[0] else None
        grad_strong = torch.empty_like(strong) if want_grads[1] else None
        # Descending class codes: the largest code among the maxima is the first index.
        codes = torch.arange(num_classes, 0, -1, dtype=weak.dtype, device=weak.device).view(1, -1, 1)
        lam = None if class_weights is None else class_weights.to(weak.dtype).view(1, -1, 1)
        chunks = list(_chunks(batch, pixels, per_chunk))
        chunk_numel = num_classes * max((bs.stop - bs.start) * (ps.stop - ps.start) for bs, ps in chunks)
        workspace = _Workspace(3 if lam is None else 4, chunk_numel, weak)

        for bs, ps in chunks:
            z1, z2 = weak[bs, :, ps], strong[bs, :, ps]
            e1, e2, scratch = (workspace.view(i, z1.shape) for i in range(3))
            # Weak view: e1 = exp(z1 - max z1), s1 = sum e1, P = e1 / s1.
            top1 = _shifted_exp(z1, out=e1)
            s1 = e1.sum(dim=1, keepdim=True)
            inv1 = torch.reciprocal(s1, out=conf[bs, :, ps])  # also P at the pseudo-class: exp(0) / s1
            # Pseudo-class: the first class with e1 == 1, i.e. the first maximum of P
            # (e1 lies in [0, 1], so floor(e1) is 1 there and 0 elsewhere).
            k = torch.floor(e1, out=scratch).mul_(codes).amax(dim=1, keepdim=True)
            k = torch.sub(num_classes, k, out=k).long().clamp_(0, num_classes - 1)  # clamp: NaN logits
            cls[bs, :, ps] = k
            # Strong view, the same way; log Q = z2 - log_norm2.
            top2 = _shifted_exp(z2, out=e2)
            s2 = e2.sum(dim=1, keepdim=True)
            inv2 = s2.reciprocal()
            log_norm2 = s2.log_().add_(top2)

            # A = sum_c lam_c P_c log Q_c and S = sum_c lam_c P_c.
            if lam is None:
                e1w, weight_sum = e1, None
                cross = _dot(e1, z2, scratch).mul_(inv1).sub_(log_norm2)
            else:
                e1w = torch.mul(e1, lam, out=workspace.view(3, z1.shape))
                weight_sum = e1w.sum(dim=1, keepdim=True).mul_(inv1)
                cross = _dot(e1w, z2, scratch).mul_(inv1).sub_(weight_sum * log_norm2)
            q_hat = e2.gather(1, k).mul_(inv2)
            base = torch.sub(1.0 if focal_type == 1 else inv1, q_hat)
            w, dw = _focal_factor(base, gamma, detach_focal)
            torch.mul(w, cross, out=loss[bs, :, ps]).neg_()

            if grad_weak is not None:
                g1 = grad_weak[bs, :, ps]
                if lam is None:
                    # P_j (u_bar - u_j) = (e1_j / s1) (sum_c P_c z1_c - z1_j)
                    u_bar = _dot(e1, z1, scratch).mul_(inv1)
                    torch.addcmul(u_bar.mul_(inv1), z1, inv1, value=-1.0, out=g1).mul_(e1)
                else:
                    # u_j = lam_j (log P_j + 1) = lam_j (z1_j - max z1 - log s1 + 1)
                    u = torch.sub(z1, top1 + s1.log() - 1.0, out=scratch).mul_(lam)
                    u_bar = _dot(e1, u, g1).mul_(inv1)
                    torch.sub(u_bar, u, out=g1).mul_(e1).mul_(inv1)
            if grad_strong is not None:
                g2 = grad_strong[bs, :, ps]
                cross_dw_q = cross * dw * q_hat  # A w' Q_k
                coefficient = (w if weight_sum is None else w * weight_sum) + cross_dw_q  # w S + A w' Q_k
                torch.mul(e2, coefficient.mul_(inv2), out=g2)
                g2.addcmul_(e1w, w * inv1, value=-1.0)
                g2.scatter_add_(1, k, cross_dw_q.neg_())

        ctx.grads = [grad_weak, grad_strong]
        ctx.mark_non_differentiable(conf)
        return loss.squeeze(1), conf.squeeze(1), cls.squeeze(1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: Tensor, _grad_conf: Tensor, _grad_cls: Tensor):  # type: ignore[override]
        if ctx.grads is None:
            raise RuntimeError(
                "the fused TUFL loss can be back-propagated only once (retain_graph is not supported)"
            )
        grad_weak, grad_strong = ctx.grads
        ctx.grads = None
        scale = grad_loss.unsqueeze(1)
        if grad_weak is not None:
            grad_weak.mul_(scale)
        if grad_strong is not None:
            grad_strong.mul_(scale)
        return grad_weak, grad_strong, None, None, None, None, None, None


def focal_consistency_terms(
    weak_logits: Tensor,
    strong_logits: Tensor,
    gamma: float = 2.0,
    focal_type: int = 1,
    class_weights: Tensor | None = None,
    detach_focal: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pixel TUFL loss with its confidence and pseudo-class, all ``[B, H, W]``.

    Returns ``(loss, conf, cls)``: the differentiable per-pixel loss ``l_i`` of PAPER.md,
    ``m_i = max_c P_ic`` and ``argmax_c P_ic`` of the weak view. The work is done in
    float32, or in float64 for float64 logits; ``class_weights`` is a ``[C]`` tensor
    or ``None`` for all ones. The result can be back-propagated once.
    """
    batch, num_classes, height, width = weak_logits.shape
    dtype = torch.promote_types(weak_logits.dtype, torch.float32)
    weak = weak_logits.to(dtype).reshape(batch, num_classes, height * width).contiguous()
    strong = strong_logits.to(dtype).reshape(batch, num_classes, height * width).contiguous()
    grad_on = torch.is_grad_enabled()
    want_grads = (grad_on and weak.requires_grad, grad_on and strong.requires_grad)
    per_chunk = chunk_pixels(weak.device, num_classes)
    loss, conf, cls = _FocalConsistency.apply(
        weak, strong, class_weights, float(gamma), int(focal_type), bool(detach_focal), want_grads, per_chunk
    )
    shape = (batch, height, width)
    return loss.view(shape), conf.view(shape), cls.view(shape)
