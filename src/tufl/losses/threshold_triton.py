"""The threshold statistic ``psi`` by radix selection in Triton kernels (CUDA), without a sort.

``psi_c`` (PAPER.md; :func:`tufl.losses.thresholds.sorted_psi`) is the element of rank
``r_c = min(floor((N_c + 1) b theta_c^d), N_c)`` of the list of class ``c``'s ``N_c``
confidences and ``theta_c`` in descending order. Each confidence ``m`` becomes the
integer ``v = 2 code + 1``, with ``code = bits(1.0) - bits(m)`` (the float32 bit
patterns: the code falls as the confidence grows); ``theta_c`` becomes ``2 code``,
which puts it before the confidences equal to it, as the sort does. The value of
rank ``r_c`` among the class's values is then found digit by digit, from the most
significant: a histogram of ``(class, digit)`` over the pixels whose higher digits
are those already chosen for their class gives, per class, the digit where the
cumulative count passes the remaining rank. That is one pass over 5 bytes per pixel
per digit, with 5- to 11-bit digits (a histogram has at most 2,048 bins), instead of
a full sort of the keys; nothing waits on the host, so a CUDA graph can record it.

Kernels: the first pass writes each pixel's value and class and the first
histogram; each further pass first chooses the previous digit from the previous
histogram (every program does, so no extra launch), then counts its own digit; a
last one-program kernel chooses the last digit and writes ``psi``. The result is
exactly :func:`~tufl.losses.thresholds.sorted_psi`'s. Triton ships with PyTorch's
CUDA builds; importing this module fails without it.
"""

from __future__ import annotations

import functools
import struct

import torch
import triton
import triton.language as tl
from torch import Tensor

# Classes (rounded up to a power of two) x digits of one histogram: 2^HISTOGRAM_BITS bins.
HISTOGRAM_BITS = 11
MAX_CLASSES = 64  # the class is kept as an int8 per pixel; 64 rows leave 5-bit digits
_BLOCK = 1024  # pixels per program and loop step
_NUM_WARPS = 8  # 128 registers per thread (ptxas -v, sm_90, Triton 3.6): two programs fit on a multiprocessor
_PROGRAMS_PER_MULTIPROCESSOR = 2


@triton.jit
def _codes(conf, code_bits):
    """``bits(1.0) - bits(conf)`` clamped to ``[0, 2^code_bits)``, as :mod:`tufl.losses.thresholds`."""
    code = 0x3F800000 - conf.to(tl.int32, bitcast=True)
    return tl.minimum(tl.maximum(code, 0), (1 << code_bits) - 1)


@triton.jit
def _histogram(bins, include, BINS: tl.constexpr):
    """Counts of ``bins`` where ``include``."""
    return tl.histogram(tl.where(include, bins, 0), BINS, mask=include)


@triton.jit
def _flush(hist_ptr, counts, BINS: tl.constexpr):
    """Add a program's counts to the global histogram."""
    tl.atomic_add(hist_ptr + tl.arange(0, BINS), counts, mask=counts > 0, sem="relaxed")


@triton.jit
def _theta_values(thresholds_ptr, num_classes, code_bits, CLASS_ROWS: tl.constexpr):
    """``2 code(theta_c)`` per class row (rows past the classes: theta = 1)."""
    rows = tl.arange(0, CLASS_ROWS)
    theta = tl.load(thresholds_ptr + rows, mask=rows < num_classes, other=1.0)
    return 2 * _codes(theta, code_bits)


@triton.jit
def _choose_digit(
    hist_ptr, state_ptr, thresholds_ptr, weights_ptr, b_bits, num_classes, code_bits, chosen, num_levels,
    CLASS_ROWS: tl.constexpr, DIGIT_BITS: tl.constexpr, FROM_COUNTS: tl.constexpr,
):
    """``(prefix, residual)`` per class row once digit ``chosen`` is chosen from its histogram:
    the digits so far and the rank still to find below them. ``FROM_COUNTS`` (``chosen == 0``):
    the rank comes from the class counts, ``floor((N_c + 1) * b * theta_c^d)`` capped at ``N_c``,
    with ``theta_c^d`` in ``weights`` and ``b`` as the bits of a float64."""
    DIGITS: tl.constexpr = 1 << DIGIT_BITS
    rows = tl.arange(0, CLASS_ROWS)
    digits = tl.arange(0, DIGITS)
    counts = tl.load(hist_ptr + chosen * (CLASS_ROWS * DIGITS) + rows[:, None] * DIGITS + digits[None, :])
    # theta_c is one more element of its class's list, counted where its higher digits match.
    theta = _theta_values(thresholds_ptr, num_classes, code_bits, CLASS_ROWS)
    below = (num_levels - 1 - chosen) * DIGIT_BITS
    if FROM_COUNTS:
        count = tl.sum(counts, axis=1)
        weight = tl.load(weights_ptr + rows, mask=rows < num_classes, other=0.0)
        b = (b_bits + tl.zeros([CLASS_ROWS], tl.int64)).to(tl.float64, bitcast=True)
        rank = tl.floor((count + 1).to(tl.float64) * b * weight).to(tl.int64)
        residual = tl.minimum(rank, count.to(tl.int64)).to(tl.int32)
        prefix = tl.zeros([CLASS_ROWS], tl.int32)
        theta_here = rows >= 0  # no higher digit (and a shift past them could be 32 bits)
    else:
        residual = tl.load(state_ptr + chosen * (2 * CLASS_ROWS) + CLASS_ROWS + rows)
        prefix = tl.load(state_ptr + chosen * (2 * CLASS_ROWS) + rows)
        theta_here = (theta >> (below + DIGIT_BITS)) == prefix
    theta_digit = (theta >> below) & (DIGITS - 1)
    counts += ((digits[None, :] == theta_digit[:, None]) & theta_here[:, None]).to(tl.int32)
    cumulative = tl.cumsum(counts, axis=1)
    digit = tl.sum((cumulative <= residual[:, None]).to(tl.int32), axis=1)
    before = tl.sum(tl.where(digits[None, :] < digit[:, None], counts, 0), axis=1)
    return (prefix << DIGIT_BITS) | digit, residual - before


@triton.jit
def _first_pass_kernel(
    conf_ptr, cls_ptr, valid_ptr, value_ptr, class_ptr, hist_ptr, pixels, num_classes, code_bits, num_levels,
    CLASS_ROWS: tl.constexpr, DIGIT_BITS: tl.constexpr, BLOCK: tl.constexpr, HAS_VALID: tl.constexpr,
):
    """Each pixel's value (-1 if invalid or of no class) and class; the histogram of the first digit."""
    BINS: tl.constexpr = CLASS_ROWS << DIGIT_BITS
    counts = tl.zeros([BINS], tl.int32)
    for start in range(tl.program_id(0) * BLOCK, pixels, tl.num_programs(0) * BLOCK):
        pixel = start + tl.arange(0, BLOCK)
        in_range = pixel < pixels
        conf = tl.load(conf_ptr + pixel, mask=in_range, other=1.0)
        klass = tl.load(cls_ptr + pixel, mask=in_range, other=0).to(tl.int32)
        include = in_range & (klass >= 0) & (klass < num_classes)  # a class out of range would index past the bins
        if HAS_VALID:
            include = include & (tl.load(valid_ptr + pixel, mask=in_range, other=0) != 0)
        value = tl.where(include, 2 * _codes(conf, code_bits) + 1, -1)
        tl.store(value_ptr + pixel, value, mask=in_range)
        tl.store(class_ptr + pixel, tl.where(include, klass, 0).to(tl.int8), mask=in_range)
        digit = (value >> ((num_levels - 1) * DIGIT_BITS)) & ((1 << DIGIT_BITS) - 1)
        counts += _histogram((klass << DIGIT_BITS) | digit, include, BINS)
    _flush(hist_ptr, counts, BINS)


@triton.jit
def _next_pass_kernel(
    value_ptr, class_ptr, hist_ptr, state_ptr, thresholds_ptr, weights_ptr, b_bits, pixels, num_classes,
    code_bits, level, num_levels,
    CLASS_ROWS: tl.constexpr, DIGIT_BITS: tl.constexpr, BLOCK: tl.constexpr, FROM_COUNTS: tl.constexpr,
):
    """Choose digit ``level - 1``, then count digit ``level`` of the pixels whose higher digits match."""
    BINS: tl.constexpr = CLASS_ROWS << DIGIT_BITS
    prefix, residual = _choose_digit(
        hist_ptr, state_ptr, thresholds_ptr, weights_ptr, b_bits, num_classes, code_bits, level - 1, num_levels,
        CLASS_ROWS, DIGIT_BITS, FROM_COUNTS,
    )
    rows = tl.arange(0, CLASS_ROWS)
    first = rows + tl.program_id(0) * CLASS_ROWS < CLASS_ROWS  # all computed the state; program 0 writes it
    tl.store(state_ptr + level * (2 * CLASS_ROWS) + rows, prefix, mask=first)
    tl.store(state_ptr + level * (2 * CLASS_ROWS) + CLASS_ROWS + rows, residual, mask=first)

    below = (num_levels - 1 - level) * DIGIT_BITS
    counts = tl.zeros([BINS], tl.int32)
    for start in range(tl.program_id(0) * BLOCK, pixels, tl.num_programs(0) * BLOCK):
        pixel = start + tl.arange(0, BLOCK)
        in_range = pixel < pixels
        value = tl.load(value_ptr + pixel, mask=in_range, other=-1)
        klass = tl.load(class_ptr + pixel, mask=in_range, other=0).to(tl.int32)
        include = (value >> (below + DIGIT_BITS)) == tl.gather(prefix, klass, 0)  # invalid: -1, never a prefix
        digit = (value >> below) & ((1 << DIGIT_BITS) - 1)
        counts += _histogram((klass << DIGIT_BITS) | digit, include, BINS)
    _flush(hist_ptr + level * BINS, counts, BINS)


@triton.jit
def _last_digit_kernel(
    hist_ptr, state_ptr, thresholds_ptr, weights_ptr, b_bits, psi_ptr, num_classes, code_bits, num_levels,
    CLASS_ROWS: tl.constexpr, DIGIT_BITS: tl.constexpr, FROM_COUNTS: tl.constexpr,
):
    """Choose the last digit; ``psi_c``: ``theta_c`` where its own value was chosen, else the
    confidence of the chosen value."""
    value, _ = _choose_digit(
        hist_ptr, state_ptr, thresholds_ptr, weights_ptr, b_bits, num_classes, code_bits, num_levels - 1,
        num_levels, CLASS_ROWS, DIGIT_BITS, FROM_COUNTS,
    )
    rows = tl.arange(0, CLASS_ROWS)
    theta = tl.load(thresholds_ptr + rows, mask=rows < num_classes, other=1.0)
    chosen_conf = (0x3F800000 - (value >> 1)).to(tl.float32, bitcast=True)
    is_theta = value == 2 * _codes(theta, code_bits)
    tl.store(psi_ptr + rows, tl.where(is_theta, theta, chosen_conf), mask=rows < num_classes)


@functools.cache
def _program_limit(device_index: int) -> int:
    return _PROGRAMS_PER_MULTIPROCESSOR * torch.cuda.get_device_properties(device_index).multi_processor_count


def _programs(device: torch.device) -> int:
    """How many programs a pass runs: as many as stay resident (each loops over the pixels,
    and adds its counts to the global histogram once); 2 elsewhere (Triton's interpreter)."""
    if device.type != "cuda":
        return 2
    return _program_limit(device.index if device.index is not None else torch.cuda.current_device())


def radix_select_psi(conf: Tensor, cls: Tensor, valid: Tensor | None, thresholds: Tensor, b: float, d: float,
                     code_bits: int) -> Tensor:
    """``psi`` (float32 ``[C]``) of :func:`~tufl.losses.thresholds.sorted_psi`, from CUDA tensors.

    ``conf`` float32, ``cls`` integer classes ``0..C-1`` and ``valid`` (bool or ``None``)
    have the same number of elements (fewer than 2^31); ``C <= 64``; confidences are
    compared through their ``code_bits``-bit codes (at most 30 bits). Pixels whose
    class is out of range are left out, like invalid ones.
    """
    num_classes, pixels = thresholds.numel(), conf.numel()
    theta = thresholds.to(torch.float32).contiguous()
    if pixels == 0:
        return theta.clone()
    rows = triton.next_power_of_2(num_classes)
    digit_bits = HISTOGRAM_BITS - (rows.bit_length() - 1)
    num_levels = -(-(code_bits + 1) // digit_bits)  # digits of the (code_bits + 1)-bit values
    bins = rows << digit_bits
    device = conf.device
    work = torch.zeros(num_levels * (bins + 2 * rows), dtype=torch.int32, device=device)
    hist, state = work, work[num_levels * bins:]
    values = torch.empty(pixels, dtype=torch.int32, device=device)
    classes = torch.empty(pixels, dtype=torch.int8, device=device)
    weights = theta.to(torch.float64).pow(d)  # theta^d as the sort computes it
    b_bits = struct.unpack("<q", struct.pack("<d", b))[0]
    psi = torch.empty_like(theta)
    grid = (min(triton.cdiv(pixels, _BLOCK), _programs(device)),)
    shape = {"CLASS_ROWS": rows, "DIGIT_BITS": digit_bits}
    _first_pass_kernel[grid](
        conf.contiguous(), cls.contiguous(), values if valid is None else valid.contiguous().view(torch.uint8),
        values, classes, hist, pixels, num_classes, code_bits, num_levels,
        BLOCK=_BLOCK, HAS_VALID=valid is not None, num_warps=_NUM_WARPS, **shape,
    )
    for level in range(1, num_levels):
        _next_pass_kernel[grid](
            values, classes, hist, state, theta, weights, b_bits, pixels, num_classes, code_bits, level, num_levels,
            BLOCK=_BLOCK, FROM_COUNTS=level == 1, num_warps=_NUM_WARPS, **shape,
        )
    _last_digit_kernel[(1,)](
        hist, state, theta, weights, b_bits, psi, num_classes, code_bits, num_levels,
        FROM_COUNTS=num_levels == 1, num_warps=_NUM_WARPS, **shape,
    )
    return psi
