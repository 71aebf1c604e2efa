"""What a training checkpoint holds, and how a run gets it back.

:func:`capture_run_state` gathers everything an exact resume needs: model,
optimiser, gradient scaler, loss states (TUFL thresholds), the RNG states of
every rank, the data positions of each loader stream, the iteration, the
non-finite counters and the best validation so far, plus the model description
and the resolved config. :func:`restore_run_state` puts it back, refusing a
checkpoint whose data stream would not continue exactly. File I/O and RNG
capture live in :mod:`tufl.train.checkpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tufl.config.loader import to_plain
from tufl.config.schema import Config
from tufl.data.loader import InfiniteLoader
from tufl.models.segmentor import Segmentor
from tufl.models.weights import WeightsError
from tufl.train import checkpoint as ckpt
from tufl.train.distributed import DistContext

STREAMS = ("source", "target", "template")


@dataclass
class RunPaths:
    """The run directory and its two checkpoints."""

    root: Path

    @property
    def last(self) -> Path:
        return self.root / ckpt.LAST_NAME

    @property
    def best(self) -> Path:
        return self.root / ckpt.BEST_NAME


@dataclass
class Progress:
    """Where a run stands: the restored counters and each loader stream's position."""

    iteration: int
    counters: dict[str, int]
    best: dict[str, Any]
    positions: dict[str, int]


def checkpoint_to_resume(paths: RunPaths, resume: bool, ctx: DistContext) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint and its path when resuming; refuses to overwrite a run
    without ``resume``. A damaged last checkpoint (truncated, unreadable) is reported and the
    previous one kept beside it is used."""
    versions = ckpt.checkpoint_versions(paths.last)
    if not resume:
        if versions:
            raise FileExistsError(
                f"{paths.root} already holds a run ({versions[0].name}); pass --resume to continue it "
                "or choose another experiment.output_dir"
            )
        return None
    if not versions:
        if ctx.is_main:
            print(f"[tufl] --resume: no checkpoint in {paths.root}, starting a new run")
        return None
    problems = []
    for path in versions:
        try:
            state = ckpt.load_checkpoint(path)
        except WeightsError as error:
            problems.append(str(error))
            continue
        if problems and ctx.is_main:
            print(f"[tufl] --resume: {'; '.join(problems)}; resuming from {path} instead", flush=True)
        return state, path
    raise WeightsError("cannot resume: no readable checkpoint: " + "; ".join(problems))


def restore_run_state(state: dict[str, Any], path: Path, ctx: DistContext, micro_batch: int, *,
                      model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                      objective: nn.Module) -> Progress:
    """Load ``state`` (read from ``path``) into the run's parts and this rank's RNGs."""
    data = state["data"]
    expect = {"world_size": ctx.world_size, "micro_batch": micro_batch}
    for key, value in expect.items():
        if data.get(key) != value:
            raise RuntimeError(
                f"cannot resume {path}: it was written with {key}={data.get(key)}, "
                f"this run has {key}={value}; the data stream would not continue exactly"
            )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    objective.load_state_dict(state["losses"])
    progress = Progress(int(state["iteration"]), dict(state["counters"]), dict(state["best"]),
                        {k: int(data[f"{k}_batches"]) for k in STREAMS})
    rng = state["rng"]
    ckpt.restore_rng_state(rng[ctx.rank] if isinstance(rng, list) else rng)
    return progress


def capture_run_state(cfg: Config, ctx: DistContext, progress: Progress, micro_batch: int, *,
                      model: Segmentor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                      objective: nn.Module) -> dict[str, Any]:
    """The checkpoint dict of the run; collective under DDP (every rank's RNG state is gathered)."""
    rng = ckpt.capture_rng_state()
    if ctx.enabled:
        gathered: list[Any] = [None] * ctx.world_size
        torch.distributed.all_gather_object(gathered, rng)
        rng = gathered
    return {
        "iteration": progress.iteration,
        "model": model.state_dict(),
        "model_config": to_plain(cfg.model),
        "input_convention": model.convention.name,
        "num_classes": cfg.model.num_classes,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "losses": objective.state_dict(),
        "rng": rng,
        "data": {
            **{f"{k}_batches": progress.positions[k] for k in STREAMS},
            "world_size": ctx.world_size,
            "micro_batch": micro_batch,
        },
        "counters": dict(progress.counters),
        "best": dict(progress.best),
        "config": to_plain(cfg),
    }


def loader_positions(loaders: dict[str, InfiniteLoader | None]) -> dict[str, int]:
    """Batches consumed by each stream (0 for a stream the run does not use)."""
    positions = {}
    for key in STREAMS:
        loader = loaders.get(key)
        positions[key] = loader.batches_consumed if loader is not None else 0
    return positions


def save_run_state(path: Path, state: dict[str, Any], ctx: DistContext, keep: int = 1) -> None:
    """Write ``state`` from the main rank (keeping ``keep`` versions); every rank waits for it under DDP."""
    if ctx.is_main:
        ckpt.save_checkpoint(path, state, keep)
    if ctx.enabled:
        torch.distributed.barrier()
