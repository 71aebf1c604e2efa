"""Speed of TUFL's backends against the literal reference, on the same inputs.

One timed step is a forward and a backward pass of the loss (threshold update
included) on random ``[B, C, H, W]`` logit pairs that require gradients. The
implementations run alternately, so that both see the same machine conditions;
each starts from the initial thresholds and both update them at every step, so
their states stay in step and the last step's losses, gradients and thresholds
can be compared. On CUDA every step is synchronised. Run it with ``tufl benchmark loss``.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from tufl.bench.loss_reference import ReferenceTUFL
from tufl.losses.backends import BACKEND_NAMES
from tufl.losses.tufl import TUFL
from tufl.runtime.atomic import atomic_write_text

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_step(loss_fn: nn.Module, weak: Tensor, strong: Tensor) -> tuple[float, float, Tensor, Tensor, Tensor]:
    """Seconds of one forward + backward and of its host part (until ``backward()`` returns,
    before waiting for the device), with the loss and both gradients."""
    weak.grad = strong.grad = None
    _synchronize(weak.device)
    start = time.perf_counter()
    loss = loss_fn(weak, strong)
    loss.backward()
    issued = time.perf_counter()
    _synchronize(weak.device)
    seconds = time.perf_counter() - start
    return seconds, issued - start, loss.detach(), weak.grad, strong.grad


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where available, else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def profile_loss(loss_fn: nn.Module, weak: Tensor, strong: Tensor, steps: int = 3) -> tuple[str, dict[str, float]]:
    """Profile ``steps`` forward + backward passes of ``loss_fn``: the operator table and counts per step.

    The table is sorted by self time on the device (CUDA) or the CPU. The counts are
    the ATen operators dispatched per step (nested calls included) and, on CUDA, the
    kernels launched per step: on a GPU the loss is bound by launches, not memory.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    on_gpu = weak.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            _timed_step(loss_fn, weak, strong)
    events = prof.key_averages()
    counts = {"aten_ops_per_step": sum(e.count for e in events if e.key.startswith("aten::")) / steps}
    if on_gpu:
        counts["cuda_kernels_per_step"] = sum(e.count for e in events if e.device_type == DeviceType.CUDA) / steps
    sort_by = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    return events.table(sort_by=sort_by, row_limit=25), counts


def _max_abs_diff(a: Tensor, b: Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def _backends_for(device: torch.device, backends: Sequence[str] | None) -> Sequence[str]:
    """``backends``, checked; None: ``torch`` and ``fused``, plus ``triton`` on CUDA."""
    if backends is None:
        backends = ("torch", "fused", "triton") if device.type == "cuda" else ("torch", "fused")
    unknown = [b for b in backends if b not in BACKEND_NAMES]
    if unknown or not backends:
        raise ValueError(f"backends must be some of {BACKEND_NAMES}, got {list(backends)}")
    return backends


def _time_alternately(losses: dict[str, nn.Module], weak: Tensor, strong: Tensor, warmup: int,
                      repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, Any]]:
    """Time the losses in turn at every step: milliseconds of each timed step, of its host
    part, and the last step's (loss, weak gradient, strong gradient) of each."""
    times: dict[str, list[float]] = {name: [] for name in losses}
    host_times: dict[str, list[float]] = {name: [] for name in losses}
    last: dict[str, Any] = {}
    for step in range(warmup + repeats):
        for name, loss_fn in losses.items():
            seconds, host_seconds, *outputs = _timed_step(loss_fn.to(weak.device), weak, strong)
            if step >= warmup:
                times[name].append(seconds * 1e3)
                host_times[name].append(host_seconds * 1e3)
            if step == warmup + repeats - 1:  # keep only the last step's results, as training would
                last[name] = outputs
            del outputs
    weak.grad = strong.grad = None
    return times, host_times, last


def _profile_all(losses: dict[str, nn.Module], weak: Tensor, strong: Tensor, heading: str,
                 path: str) -> dict[str, dict[str, float]]:
    """Profile every loss but the reference (:func:`profile_loss`), write their tables to
    ``path`` under ``heading``; returns their counts."""
    sections, counts_by_name = [], {}
    for name in [n for n in losses if n != "reference"]:
        table, counts = profile_loss(losses[name], weak, strong)
        counts_by_name[name] = counts
        summary = ", ".join(f"{key} {value:g}" for key, value in counts.items())
        sections.append(f"== {name} ({heading}): {summary}\n{table}")
    weak.grad = strong.grad = None
    atomic_write_text(path, "\n".join(sections))
    return counts_by_name


def _conditions(device: torch.device, shape: tuple[int, ...], dtype: torch.dtype, repeats: int) -> dict[str, Any]:
    """The run conditions of a result."""
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "shape": list(shape),
        "dtype": str(dtype).removeprefix("torch."),
        "repeats": repeats,
    }


def _timings(times: dict[str, list[float]], host_times: dict[str, list[float]], cuda: bool) -> dict[str, float]:
    """Median and minimum milliseconds of each loss (on CUDA also the median host time)."""
    out = {}
    for name, values in times.items():
        out[f"{name}_ms"] = statistics.median(values)
        out[f"{name}_min_ms"] = min(values)
        if cuda:
            out[f"{name}_host_ms"] = statistics.median(host_times[name])
    return out


def _against_reference(name: str, times: dict[str, list[float]], last: dict[str, Any],
                       losses: dict[str, nn.Module]) -> dict[str, Any]:
    """Backend ``name`` against the reference: speed-ups and agreement, keys prefixed ``<name>_``."""
    result = {"speedup": statistics.median(times["reference"]) / statistics.median(times[name]),
              "speedup_min": min(times["reference"]) / min(times[name]),
              **_agreement(last[name], last["reference"], losses[name], losses["reference"])}
    return {f"{name}_{key}": value for key, value in result.items()}


def run_loss_benchmark(
    device: torch.device | str = "cpu",
    num_classes: int = 19,
    height: int = 512,
    width: int = 1024,
    batch: int = 2,
    repeats: int = 5,
    dtype: torch.dtype = torch.float32,
    warmup: int = 1,
    logit_scale: float = 3.0,
    seed: int = 0,
    backends: Sequence[str] | None = None,
    profile_path: str | None = None,
) -> dict[str, Any]:
    """Time TUFL with each of ``backends`` and ReferenceTUFL (default options) and check that they agree.

    Logits are ``logit_scale * N(0, 1)`` in ``dtype``. Returns times in ms (median
    and minimum over ``repeats`` steps after ``warmup`` untimed ones; on CUDA also the
    median host time, until ``backward()`` returns, keys ``*_host_ms``), the speed-up
    (reference / backend, from the medians and from the minima), the largest absolute
    differences of the last step's loss, gradients and thresholds, the number of
    pixels whose gradients differ by more than 1e-3 of the largest gradient (pixels
    whose confidence sits within rounding of their threshold can pass in only one of
    the two), ``agree`` (loss and thresholds within tolerance, at most
    ``max(2, pixels / 1e5)`` such pixels), the last pass fraction and the run
    conditions, for each backend (keys prefixed ``<backend>_``; default backends:
    ``torch`` and ``fused``, plus ``triton`` on CUDA). ``profile_path``
    also profiles the fast implementations after the timing (:func:`profile_loss`),
    writes their tables there and adds their counts under ``profile``.
    """
    if min(num_classes, height, width, batch, repeats) < 1 or warmup < 0:
        raise ValueError("num_classes, height, width, batch and repeats must be positive and warmup non-negative")
    device = torch.device(device)
    backends = _backends_for(device, backends)
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, num_classes, height, width)
    weak = (torch.randn(shape, generator=generator) * logit_scale).to(device, dtype).requires_grad_()
    strong = (torch.randn(shape, generator=generator) * logit_scale).to(device, dtype).requires_grad_()
    losses: dict[str, nn.Module] = {name: TUFL(num_classes, backend=name) for name in backends}
    losses["reference"] = ReferenceTUFL(num_classes)
    times, host_times, last = _time_alternately(losses, weak, strong, warmup, repeats)

    result = _conditions(device, shape, dtype, repeats)
    result.update(_timings(times, host_times, device.type == "cuda"))
    for name in backends:
        result.update(_against_reference(name, times, last, losses))
    result["pass_fraction"] = float(losses[backends[0]].last_pass_fraction)
    if profile_path is not None:
        heading = f"{result['device_name']}, shape {list(shape)}"
        result["profile"] = _profile_all(losses, weak, strong, heading, profile_path)
    return result


def _agreement(fast: Sequence[Tensor], slow: Sequence[Tensor], fast_fn: nn.Module, slow_fn: nn.Module) -> dict:
    """Largest differences of the last step's loss, gradients and thresholds, and ``agree``.

    A pixel whose confidence sits within rounding of its threshold may pass in one
    implementation and not in the other; its gradient then differs entirely. Such
    pixels are counted, and a handful of them is tolerated.
    """
    (loss_f, grad_weak_f, grad_strong_f), (loss_r, grad_weak_r, grad_strong_r) = fast, slow
    grad_scale = max(float(grad_weak_r.float().abs().max()), float(grad_strong_r.float().abs().max()), 1e-30)
    mismatch = torch.zeros_like(grad_weak_r[:, 0], dtype=torch.bool)
    for f, r in ((grad_weak_f, grad_weak_r), (grad_strong_f, grad_strong_r)):
        mismatch |= ((f.float() - r.float()).abs() > 1e-3 * grad_scale).any(dim=1)
    mismatched = int(mismatch.sum())
    diffs: dict[str, Any] = {
        "max_loss_diff": _max_abs_diff(loss_f, loss_r),
        "max_grad_weak_diff": _max_abs_diff(grad_weak_f, grad_weak_r),
        "max_grad_strong_diff": _max_abs_diff(grad_strong_f, grad_strong_r),
        "grad_mismatch_pixels": mismatched,
        "max_threshold_diff": _max_abs_diff(fast_fn.thresholds, slow_fn.thresholds),
    }
    diffs["agree"] = (
        diffs["max_loss_diff"] <= 1e-4 * max(1.0, abs(float(loss_r)))
        and mismatched <= max(2, mismatch.numel() // 100_000)
        and diffs["max_threshold_diff"] <= 1e-5
    )
    return diffs
