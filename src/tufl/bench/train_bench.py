"""Training-iteration time and peak memory of each network and mode (the step alone);
``--end-to-end``: whole iterations with the real loaders (:mod:`tufl.bench.e2e_bench`).

Each (network, mode) runs in a fresh process (so the CPU peak resident memory is
its own) on random images of the given crop size: a full optimiser step of the
real objective (supervised CE; + TUFL on warped weak/strong views; + cross-domain
mixing with a frozen pseudo-labeller). Reported: median seconds per iteration after
warm-up, and peak memory (CUDA: max allocated; CPU: peak RSS of the process).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import torch

MODES = ("source_only", "stage1", "stage2")
ARCHS = ("deeplabv2", "bisenet")


def _synthetic_batches(batch: int, height: int, width: int, num_classes: int,
                       device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Random source and target batches of uint8 images, block labels and a fixed warp."""
    g = torch.Generator().manual_seed(0)
    images = lambda: torch.randint(0, 256, (batch, 3, height, width), generator=g, dtype=torch.uint8)  # noqa: E731
    labels = torch.randint(0, num_classes, (batch, height, width), generator=g)
    # smooth blocks so that ClassMix has several classes to choose from
    labels = torch.nn.functional.interpolate(labels[:, None].float(), scale_factor=1 / 32, mode="nearest")
    labels = torch.nn.functional.interpolate(labels, size=(height, width), mode="nearest")[:, 0].long()
    theta = torch.tensor([[1.0, 0.1, 0.0], [-0.1, 1.0, 0.0]]).expand(batch, 2, 3).contiguous()
    source = {"image": images().to(device), "label": labels.to(device)}
    target = {"weak": images().to(device), "strong": images().to(device), "theta": theta.to(device)}
    return source, target


@dataclass(frozen=True)
class TrainingStep:
    """What one optimiser step of the benchmark runs: the network (and its compiled forward),
    the objective, the optimiser and the mixed-precision settings."""

    cfg: Any
    model: torch.nn.Module
    forward: Callable[..., Any]
    objective: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    use_amp: bool
    dtype: torch.dtype
    compiled: bool


def build_training_step(arch: str, mode: str, dev: torch.device, amp: bool,
                        overrides: Sequence[str] = ()) -> TrainingStep:
    """The step of ``arch`` in ``mode`` with the config settings ``overrides``, on ``dev``."""
    from types import SimpleNamespace

    from tufl.config import experiment_from_dict
    from tufl.models.build import build_model
    from tufl.objective import BuildContext, build_objective
    from tufl.objective.pseudo_labels import frozen_labeller
    from tufl.runtime.typed_config import apply_overrides
    from tufl.train.engine import amp_settings
    from tufl.train.optim import build_optimizer

    tree = {"model": {"arch": arch, "freeze_bn": "backbone" if arch == "deeplabv2" else "none"},
            "mix": {"p_longtail": 0.0}}
    cfg = experiment_from_dict(apply_overrides(tree, overrides, {}))
    # the mode set after validation: the networks here are random, where a stage-two run starts from a checkpoint
    cfg = replace(cfg, experiment=replace(cfg.experiment, mode=mode))
    model = build_model(cfg.model).model.to(dev).train()
    data = SimpleNamespace(source=None, class_index=None)  # no long-tail pasting: no source index
    objective = build_objective(BuildContext(cfg, model, data, None, dev), frozen_labeller(cfg, None, dev)).to(dev)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    compiled = bool(getattr(cfg.train, "compile", False))
    forward = torch.compile(model) if compiled else model
    optimizer = build_optimizer(model, cfg.optim)
    use_amp, dtype = amp_settings(dev, amp)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and dtype == torch.float16)
    return TrainingStep(cfg, model, forward, objective, optimizer, scaler, use_amp, dtype, compiled)


def _to_channels_last(*batches: dict[str, torch.Tensor]) -> None:
    """Images of the batches in channels-last layout, in place (as the trainer hands them over)."""
    for batch_dict in batches:
        for key, value in batch_dict.items():
            if value.dim() == 4 and value.shape[1] == 3:
                batch_dict[key] = value.contiguous(memory_format=torch.channels_last)


def _timed_steps(step: TrainingStep, source: dict, target: dict, dev: torch.device, warmup: int,
                 repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` optimiser steps after ``warmup`` untimed ones (synchronised on CUDA)."""
    from tufl.train.engine import step_generator

    times = []
    for index in range(warmup + repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        step.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=step.dtype, enabled=step.use_amp):
            out = step.objective(step.forward, source, target, step_generator(0, index, 0, 0))
        step.scaler.scale(out.loss).backward()
        step.scaler.step(step.optimizer)
        step.scaler.update()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return times


def _peak_memory(dev: torch.device) -> tuple[float, str]:
    """Peak memory in MiB and what it measures: CUDA max allocated, else the process's peak RSS."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20, "cuda max allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"


def time_training_step(arch: str, mode: str, height: int, width: int, batch: int, device: str,
                       amp: bool, warmup: int, repeats: int, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Median seconds per optimiser step and peak memory for one configuration.

    ``overrides`` are ``key=value`` config settings (as ``--set``), e.g.
    ``loss.tufl.backend=torch``; the losses and the mixing are built from that config,
    and ``optim.fused``, ``train.channels_last`` and ``train.compile`` (where the schema
    has it) apply as in training.
    """
    dev = torch.device(device)
    step = build_training_step(arch, mode, dev, amp, overrides)
    source, target = _synthetic_batches(batch, height, width, step.cfg.model.num_classes, dev)
    channels_last = step.cfg.train.channels_last
    if channels_last:
        _to_channels_last(source, target)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = _timed_steps(step, source, target, dev, warmup, repeats)
    peak_mb, memory = _peak_memory(dev)
    return {"arch": arch, "mode": mode, "crop": [height, width], "batch_per_domain": batch, "device": str(dev),
            "overrides": list(overrides), "channels_last": channels_last, "compile": step.compiled,
            "fused": all(bool(g.get("fused")) for g in step.optimizer.param_groups),
            "amp": str(step.dtype).removeprefix("torch.") if step.use_amp else "off",
            "seconds_per_iter": statistics.median(times),
            "peak_memory_mb": round(peak_mb, 1), "memory": memory, "threads": torch.get_num_threads(),
            "torch": torch.__version__}


# A child process of run_step_benchmark: time_training_step of the JSON keyword arguments in argv[1].
_CHILD = ("import json, sys; from tufl.bench.train_bench import time_training_step; "
          "print(json.dumps(time_training_step(**json.loads(sys.argv[1]))))")


def run_step_benchmark(archs: Sequence[str], modes: Sequence[str], height: int, width: int, batch: int,
                       device: str, amp: bool, warmup: int, repeats: int, overrides: Sequence[str] = (),
                       say: Callable[[str], None] = partial(print, flush=True)) -> list[dict[str, Any]]:
    """:func:`time_training_step` of every network and mode, each in a fresh process (so that
    the CPU peak memory is its own); ``say`` gets each row's table line as it ends.
    Raises RuntimeError with the end of the child's error output when one fails."""
    rows = []
    for arch in archs:
        for mode in modes:
            kwargs = {"arch": arch, "mode": mode, "height": height, "width": width, "batch": batch,
                      "device": device, "amp": amp, "warmup": warmup, "repeats": repeats,
                      "overrides": list(overrides)}
            done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(kwargs)], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            say(format_rows(rows[-1:]).splitlines()[-1])
    return rows


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """Aligned text table of the step rows."""
    lines = ["network    mode         crop       batch  amp   s/iter   peak MB   settings",
             "---------  -----------  ---------  -----  ----  -------  --------  --------"]
    for r in rows:
        lines.append(f"{r['arch']:<9}  {r['mode']:<11}  {r['crop'][0]}x{r['crop'][1]:<5}  {r['batch_per_domain']:>5}  "
                     f"{r['amp']:<4}  {r['seconds_per_iter']:7.3f}  {r['peak_memory_mb']:8.0f}  "
                     f"{' '.join(r['overrides']) or '-'}")
    return "\n".join(lines)
