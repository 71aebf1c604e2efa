"""Inference speed of segmentation networks: frames per second and latency percentiles.

One timed step is what a deployed model does per batch: the forward pass of the
Segmentor (normalisation, network, upsampling to the input size) followed by the
argmax, on a random uint8 batch already on the device. Each model is timed in
float32 and, with ``amp``, under mixed precision (bf16 where supported, else fp16
on CUDA; bf16 autocast on the CPU). On CUDA every step is synchronised so that a
latency is the full time of that step. Run it with ``tufl benchmark inference``
(``--builder package.module:function`` times the networks that function returns).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tufl.evaluation.inference import amp_dtype, eval_mode, forward_logits

ModelBuilder = Callable[[], Mapping[str, nn.Module]]
_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def run_inference_benchmark(
    models: Mapping[str, nn.Module],
    height: int = 1024,
    width: int = 2048,
    device: torch.device | str = "cpu",
    amp: bool = False,
    batch: int = 1,
    warmup: int = 5,
    repeats: int = 20,
) -> list[dict[str, Any]]:
    """Time each model (moved to ``device``, run in eval mode) and return one row per precision.

    Row keys: model, precision, device, batch, height, width, parameters, fps,
    latency_ms_mean, latency_ms_p50, latency_ms_p90, peak_memory_mib (CUDA only,
    else ``None``).
    """
    if min(height, width, batch, repeats) < 1 or warmup < 0:
        raise ValueError("height, width, batch and repeats must be positive and warmup non-negative")
    device = torch.device(device)
    precisions = [False, True] if amp else [False]
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=generator).to(device)
    rows = []
    for name, model in models.items():
        model.to(device)
        with eval_mode(model):
            for use_amp in precisions:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                latencies = np.asarray(_time_steps(model, images, use_amp, warmup, repeats))
                peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
                rows.append(
                    {
                        "model": name,
                        "precision": _DTYPE_NAMES[amp_dtype(device)] if use_amp else "fp32",
                        "device": _device_name(device),
                        "batch": batch,
                        "height": height,
                        "width": width,
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "fps": batch * latencies.size / float(latencies.sum()),
                        "latency_ms_mean": 1000.0 * float(latencies.mean()),
                        "latency_ms_p50": 1000.0 * float(np.percentile(latencies, 50)),
                        "latency_ms_p90": 1000.0 * float(np.percentile(latencies, 90)),
                        "peak_memory_mib": peak,
                    }
                )
    return rows


def format_benchmark(rows: Sequence[Mapping[str, Any]]) -> str:
    """The benchmark rows as an aligned text table."""
    header = (
        f"{'model':<20} {'precision':<9} {'batch':>5} {'size':>11} "
        f"{'fps':>9} {'mean ms':>9} {'p50 ms':>9} {'p90 ms':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        size = f"{r['height']}x{r['width']}"
        lines.append(
            f"{r['model']:<20} {r['precision']:<9} {r['batch']:>5} {size:>11} {r['fps']:>9.2f} "
            f"{r['latency_ms_mean']:>9.2f} {r['latency_ms_p50']:>9.2f} {r['latency_ms_p90']:>9.2f}"
        )
    return "\n".join(lines)


def load_builder(spec: str) -> ModelBuilder:
    """Resolve ``"package.module:function"`` to the model-building callable."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"builder must look like 'package.module:function', got {spec!r}")
    builder = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(builder):
        raise ValueError(f"{spec!r} is not a callable")
    return builder


def _time_steps(model: nn.Module, images: torch.Tensor, amp: bool, warmup: int, repeats: int) -> list[float]:
    """Seconds taken by each of ``repeats`` timed steps, after ``warmup`` untimed ones."""
    cuda = images.device.type == "cuda"
    latencies = []
    with torch.inference_mode():
        for step in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize(images.device)
            start = time.perf_counter()
            forward_logits(model, images, amp).argmax(dim=1)
            if cuda:
                torch.cuda.synchronize(images.device)
            if step >= warmup:
                latencies.append(time.perf_counter() - start)
    return latencies


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return str(device)


def default_models() -> dict[str, nn.Module]:
    """The two inference networks at 19 classes (random weights: speed only)."""
    from tufl.models.build import ModelConfig, build_model

    return {
        "deeplabv2": build_model(ModelConfig(arch="deeplabv2"), training=False).model,
        "bisenet": build_model(ModelConfig(arch="bisenet"), training=False).model,
    }
