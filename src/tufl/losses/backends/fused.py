"""The ``fused`` backend: TUFL's per-pixel terms with hand-derived gradients, in one pass.

For logits ``z1`` (weak view) and ``z2`` (strong view), :func:`tufl.losses.tufl.focal_pixel_terms`
defines the per-pixel loss ``l = sum_c lam_c [ sg(P_c) (log sg(P_c) - w log Q_c) - P_c log P_c ]``
with ``P = softmax(z1)``, ``Q = softmax(z2)``, pseudo-class ``k = argmax P`` and focal
factor ``w = |1 - Q_k|^gamma`` (type 1) or ``|sg(P_k) - Q_k|^gamma`` (type 2). Its value
is ``-w A`` with ``A = sum_c lam_c P_c log Q_c``; its gradients are

    dl/dz1_j = P_j (u_bar - u_j),           u_j = lam_j (log P_j + 1),  u_bar = sum_c P_c u_c
    dl/dz2_j = -w lam_j P_j + Q_j (w S + A w' Q_k) - [j = k] A w' Q_k,
                                              S = sum_c lam_c P_c,  w' = dw/dQ_k

(``w' = 0`` when the focal factor is detached). Each pixel's loss depends on that
pixel's logits only, so the forward pass writes the per-pixel Jacobians (the gradient
maps, computed while the logits are at hand) and the backward pass only scales them
in place by the incoming per-pixel gradient; as a consequence the result can be
back-propagated once. The weak view's map is stored as ``e1_j (u_j - u_bar)``, i.e.
times ``-s1``, and the backward folds ``-1 / s1`` into its scale. ``log_softmax`` is
never materialised: with ``e = exp(z - max z)`` and ``s = sum e``, ``P = e / s`` and
``log Q = z2 - log sum exp z2`` enter through per-pixel scalars.

On the CPU the pixels are processed in chunks that stay in the cache, through a
few scratch buffers, and every map is written once per chunk. Given a
:class:`~tufl.losses.backends.reused_memory.ReusedMemory`, the outputs, gradient maps and
scratch buffers keep their memory from one call to the next (fresh tensors of tens
of MiB pay a page fault per 4 KiB on first touch). On other devices the whole batch
is one chunk. The tests check every backend against the definition.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from tufl.losses.backends.reused_memory import ReusedMemory

# Elements (classes x pixels) of one chunk on the CPU: 4 MiB per float32 map. Smaller
# chunks pay more per-operation overhead, larger ones fall out of the L3 cache
# (measured on the 2-vCPU EPYC of docs/benchmarks.md: 2^18 to 2^21 tried).
CPU_CHUNK_ELEMENTS = 1 << 20
_LOG2_E = 1.4426950408889634
_LN_2 = 0.6931471805599453
# Classes for which sums of distinct powers of two 2^(C-1-c) are exact (mantissa + 1 bits).
_EXACT_POWER_SUMS = {torch.float32: 24, torch.float64: 53}
# Integer view, mantissa bits and exponent bias of the floating types.
_FLOAT_LAYOUT = {torch.float32: (torch.int32, 23, 127), torch.float64: (torch.int64, 52, 1023)}


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


def _new_tensor(
    memory: ReusedMemory | None, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> Tensor:
    """An uninitialised tensor: the memory kept under ``name`` in ``memory``, or fresh without one."""
    if memory is None:
        return torch.empty(shape, dtype=dtype, device=device)
    return memory.tensor(name, shape, dtype, device)


class _Workspace:
    """Flat buffers for the chunk temporaries, reused by all chunks of a call.

    Fresh multi-MiB tensors cost page faults on every allocation; the buffers come
    from ``memory`` (kept between calls) when given.
    """

    def __init__(self, count: int, numel: int, like: Tensor, memory: ReusedMemory | None) -> None:
        self._buffers = [_new_tensor(memory, f"chunk{i}", (numel,), like.dtype, like.device) for i in range(count)]

    def view(self, index: int, shape: torch.Size) -> Tensor:
        return self._buffers[index][: shape.numel()].view(shape)


def _shifted_exp(logits: Tensor, out: Tensor) -> Tensor:
    """Write ``exp(z - m)`` into ``out`` (exactly 1 at the maximum) and return ``m = max_c z``.

    Uses ``exp2`` of the scaled shift, about twice as fast as ``exp`` on the CPU.
    """
    top = logits.amax(dim=1, keepdim=True)
    torch.sub(logits, top, out=out).mul_(_LOG2_E).exp2_()
    return top


def _log_normaliser_exp(logits: Tensor, out: Tensor) -> tuple[Tensor, Tensor]:
    """Write ``e = exp(z - m')`` into ``out`` (per-pixel shift ``m'``); return ``log sum_c exp z_c`` and ``sum_c e_c``.

    ``m'`` is the maximum up to one rounding (one fused multiply-add pass instead of a
    subtraction and a multiplication), so the largest entry is 1 only up to rounding:
    use :func:`_shifted_exp` where the maximum must be found exactly.
    """
    shift = logits.amax(dim=1, keepdim=True).mul_(_LOG2_E)  # base-2 shift m' log2(e)
    torch.add(shift.neg(), logits, alpha=_LOG2_E, out=out).exp2_()
    total = out.sum(dim=1, keepdim=True)
    return torch.log(total).add_(shift, alpha=_LN_2), total


def _class_codes(num_classes: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Per-class codes for :func:`_first_maximum`.

    Powers of two ``2^(C-1-c)`` (shape ``[1, 1, C]``) on the CPU when their sums are
    exact in ``dtype``, else descending integers ``C - c`` (shape ``[1, C, 1]``). The
    first form is a CPU speed-up; on an H200 the float64 loss through it was wrong
    (a CUDA test caught it; the matrix product itself was exact there, the cause was
    not found), so other devices use the second form, which passes there.
    """
    if device.type == "cpu" and num_classes <= _EXACT_POWER_SUMS.get(dtype, 0):
        return torch.pow(2.0, torch.arange(num_classes - 1, -1, -1, dtype=dtype, device=device)).view(1, 1, -1)
    return torch.arange(num_classes, 0, -1, dtype=dtype, device=device).view(1, -1, 1)


def _first_maximum(shifted_exp: Tensor, scratch: Tensor, codes: Tensor, out: Tensor) -> Tensor:
    """Write into ``out`` (int64 ``[b, 1, n]``) the first class where ``exp(z - max z)`` is exactly 1.

    ``floor`` turns ``exp(z - max z)`` (in ``[0, 1]``) into the indicator of the
    maxima. With power-of-two codes one matrix product sums the codes of the maxima,
    and the exponent of that sum (read off its bits) is the first of them; otherwise
    the largest descending code is taken. NaN logits give some valid index.
    """
    flags = torch.floor(shifted_exp, out=scratch)
    num_classes = shifted_exp.shape[1]
    if codes.shape[1] == 1:  # powers of two along the last dimension
        total = torch.matmul(codes, flags)
        int_dtype, mantissa_bits, bias = _FLOAT_LAYOUT[total.dtype]
        # The biased exponent of the sum is bias + C - 1 - (first index).
        torch.sub(bias + num_classes - 1, total.view(int_dtype) >> mantissa_bits, out=out)
    else:
        out.copy_(torch.sub(num_classes, flags.mul_(codes).amax(dim=1, keepdim=True)))  # casts NaN to some int
    return out.clamp_(0, num_classes - 1)


def _dot(a: Tensor, b: Tensor, scratch: Tensor) -> Tensor:
    """``sum_c a_c b_c`` over dim 1 (keepdim), with the products written into ``scratch``."""
    return torch.mul(a, b, out=scratch).sum(dim=1, keepdim=True)


def _focal_factor(base: Tensor, gamma: float, detach_focal: bool) -> tuple[Tensor, Tensor | None]:
    """``w = |base|^gamma`` and ``-w' = -dw/dQ_k = gamma |base|^(gamma-1) sign(base)``.

    ``-w'`` is ``None`` when it is 0 everywhere (``gamma = 0`` or a detached factor).
    """
    if gamma == 0.0:
        return torch.ones_like(base), None
    if gamma == 2.0:  # the default: two products instead of six operations
        return base * base, None if detach_focal else base * 2.0
    magnitude = base.abs()
    w = magnitude.pow(gamma)
    if detach_focal:
        return w, None
    slope = magnitude.pow_(gamma - 1.0).mul_(base.sign())
    if gamma < 1.0:  # |0|^(gamma - 1) is infinite: take the subgradient 0 there
        slope = torch.where(base == 0, 0.0, slope)
    return w, slope.mul_(gamma)


class _Maps(NamedTuple):
    """The outputs ``[B, 1, N]`` and gradient maps ``[B, C, N]`` (``None`` when not wanted)."""

    loss: Tensor
    conf: Tensor
    cls: Tensor
    grad_weak: Tensor | None
    grad_strong: Tensor | None

    @staticmethod
    def allocate(weak: Tensor, strong: Tensor, want_grads: tuple[bool, bool], memory: ReusedMemory | None) -> _Maps:
        """Uninitialised maps for ``[B, C, N]`` logits (kept in ``memory`` when given)."""
        map_shape, device = (weak.shape[0], 1, weak.shape[2]), weak.device
        return _Maps(
            _new_tensor(memory, "loss", map_shape, weak.dtype, device),
            _new_tensor(memory, "conf", map_shape, weak.dtype, device),
            _new_tensor(memory, "cls", map_shape, torch.int64, device),
            _new_tensor(memory, "grad_weak", weak.shape, weak.dtype, device) if want_grads[0] else None,
            _new_tensor(memory, "grad_strong", strong.shape, strong.dtype, device) if want_grads[1] else None,
        )

    def chunk(self, bs: slice, ps: slice) -> _Maps:
        """The views of a chunk's pixels."""
        return _Maps(*(None if m is None else m[bs, :, ps] for m in self))


def _weak_view(z1: Tensor, e1: Tensor, scratch: Tensor, lam: Tensor | None, out: _Maps) -> Tensor:
    """Weak view of a chunk: ``e1 = exp(z1 - max z1)``, ``P = e1 / s1``; writes ``1 / s1`` (also
    ``P`` at the pseudo-class) into ``out.conf`` and the weak gradient map; returns ``1 / s1``."""
    top1 = _shifted_exp(z1, out=e1)
    s1 = e1.sum(dim=1, keepdim=True)
    inv1 = torch.reciprocal(s1, out=out.conf)  # also P at the pseudo-class: exp(0) / s1
    if out.grad_weak is not None:
        # Written while z1 is in the cache: e1_j (u_j - u_bar) = -s1 dl/dz1_j (backward
        # multiplies by -1 / s1). Without class weights u_j can be taken as z1_j:
        # constants cancel in u_j - u_bar.
        if lam is None:
            product = torch.mul(e1, z1, out=scratch)
        else:  # u_j = lam_j (log P_j + 1) = lam_j (z1_j - max z1 - log s1 + 1)
            product = torch.sub(z1, top1 + s1.log() - 1.0, out=scratch).mul_(lam).mul_(e1)
        u_bar = product.sum(dim=1, keepdim=True).mul_(inv1)
        torch.addcmul(product, e1, u_bar, value=-1.0, out=out.grad_weak)
    return inv1


def _negative_cross(
    e1: Tensor, z2: Tensor, inv1: Tensor, log_norm2: Tensor, lam: Tensor | None, scratch: Tensor,
    weighted: Tensor | None,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """``(lam e1, S, -A)``: ``-A = S log_norm2 - sum_c lam_c P_c z2_c`` with ``S = sum_c lam_c P_c``
    (``e1`` and ``None`` for ``S = 1`` without weights; ``lam e1`` is written into ``weighted``)."""
    if lam is None:
        return e1, None, torch.addcmul(log_norm2, _dot(e1, z2, scratch), inv1, value=-1.0)
    e1w = torch.mul(e1, lam, out=weighted)
    weight_sum = e1w.sum(dim=1, keepdim=True).mul_(inv1)
    return e1w, weight_sum, torch.addcmul(weight_sum * log_norm2, _dot(e1w, z2, scratch), inv1, value=-1.0)


def _chunk_terms(
    z1: Tensor, z2: Tensor, out: _Maps, workspace: _Workspace, lam: Tensor | None, class_codes: Tensor,
    options: tuple[float, int, bool],
) -> None:
    """Write one chunk's loss, confidence, pseudo-class and gradient maps into ``out`` (its views)."""
    gamma, focal_type, detach_focal = options
    e1, e2, scratch = (workspace.view(i, z1.shape) for i in range(3))
    inv1 = _weak_view(z1, e1, scratch, lam, out)
    k = _first_maximum(e1, scratch, class_codes, out=out.cls)
    # Strong view: e2 = exp(z2 - m'), Q = e2 / s2, log Q = z2 - log_norm2.
    log_norm2, s2 = _log_normaliser_exp(z2, out=e2)
    inv2 = s2.reciprocal_()
    weighted = None if lam is None else workspace.view(3, z1.shape)
    e1w, weight_sum, neg_cross = _negative_cross(e1, z2, inv1, log_norm2, lam, scratch, weighted)
    q_hat = e2.gather(1, k).mul_(inv2)
    base = torch.sub(1.0 if focal_type == 1 else inv1, q_hat)
    w, neg_slope = _focal_factor(base, gamma, detach_focal)
    torch.mul(w, neg_cross, out=out.loss)
    if out.grad_strong is None:
        return
    # dl/dz2_j = Q_j (w S + A w' Q_k) - [j = k] A w' Q_k - w lam_j P_j, assembled in
    # the scratch buffer so that the gradient map is written once.
    weighted_w = w if weight_sum is None else w * weight_sum
    if neg_slope is None:
        torch.mul(e2, weighted_w.mul(inv2), out=scratch)
    else:
        cross_slope_q = neg_slope.mul_(neg_cross).mul_(q_hat)  # A w' Q_k
        torch.mul(e2, torch.add(weighted_w, cross_slope_q).mul_(inv2), out=scratch)
        scratch.scatter_add_(1, k, cross_slope_q.neg_())
    torch.addcmul(scratch, e1w, w.mul_(inv1), value=-1.0, out=out.grad_strong)


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
        memory: ReusedMemory | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        batch, num_classes, pixels = weak.shape
        maps = _Maps.allocate(weak, strong, want_grads, memory)
        class_codes = _class_codes(num_classes, weak.dtype, weak.device)
        lam = None if class_weights is None else class_weights.to(weak.dtype).view(1, -1, 1)
        chunks = list(_chunks(batch, pixels, per_chunk))
        chunk_numel = num_classes * max((bs.stop - bs.start) * (ps.stop - ps.start) for bs, ps in chunks)
        workspace = _Workspace(3 if lam is None else 4, chunk_numel, weak, memory)
        for bs, ps in chunks:
            _chunk_terms(weak[bs, :, ps], strong[bs, :, ps], maps.chunk(bs, ps), workspace, lam, class_codes,
                         (gamma, focal_type, detach_focal))

        ctx.grads = [maps.grad_weak, maps.grad_strong]
        ctx.save_for_backward(maps.conf)  # 1 / s1, for the weak view's gradient
        ctx.mark_non_differentiable(maps.conf)
        return maps.loss.squeeze(1), maps.conf.squeeze(1), maps.cls.squeeze(1)

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
            (inverse_sum,) = ctx.saved_tensors
            grad_weak.mul_(scale * inverse_sum.neg())
        if grad_strong is not None:
            grad_strong.mul_(scale)
        return grad_weak, grad_strong, None, None, None, None, None, None, None


def flat_pixels(logits: Tensor, dtype: torch.dtype) -> Tensor:
    """``[B, C, H, W]`` logits as contiguous ``[B, C, H * W]`` of ``dtype``."""
    batch, num_classes, height, width = logits.shape
    return logits.to(dtype).reshape(batch, num_classes, height * width).contiguous()


def pixel_maps(maps: tuple[Tensor, Tensor, Tensor], logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The ``[B, N]`` loss, confidence and pseudo-class of ``[B, C, H, W]`` logits viewed as ``[B, H, W]``."""
    loss, conf, cls = maps
    shape = (logits.shape[0], *logits.shape[2:])
    return loss.view(shape), conf.view(shape), cls.view(shape)


@torch.compiler.disable  # hand-written backward, memory kept between calls: a graph break
def fused_pixel_terms(
    weak_logits: Tensor, strong_logits: Tensor, gamma: float, focal_type: int, class_weights: Tensor | None,
    detach_focal: bool, memory: ReusedMemory | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(loss, conf, cls)``, each ``[B, H, W]``, of ``[B, C, H, W]`` logits, as
    :func:`tufl.losses.tufl.focal_pixel_terms` defines them.

    The work is done in float32, or in float64 for float64 logits. The result can be
    back-propagated once. On the CPU, ``memory`` (kept by the caller between calls)
    supplies the outputs and gradient maps without fresh page faults; on other
    devices it is emptied and not used. The pseudo-class is the first class whose
    ``exp(z - max z)`` rounds to 1, which can differ from ``argmax`` for logits
    within rounding of the maximum.
    """
    dtype = torch.promote_types(weak_logits.dtype, torch.float32)
    weak, strong = flat_pixels(weak_logits, dtype), flat_pixels(strong_logits, dtype)
    if weak.device.type != "cpu" and memory is not None:
        memory.clear()  # kept CPU buffers are of no use once the loss runs elsewhere
        memory = None
    options = (float(gamma), int(focal_type), bool(detach_focal))
    grad_on = torch.is_grad_enabled()
    want_grads = (grad_on and weak.requires_grad, grad_on and strong.requires_grad)
    per_chunk = chunk_pixels(weak.device, weak.shape[1])
    maps = _FocalConsistency.apply(weak, strong, class_weights, *options, want_grads, per_chunk, memory)
    return pixel_maps(maps, weak_logits)
