"""What a training checkpoint holds, and how a run gets it back.

:func:`capture_run_state` gathers everything an exact resume needs: model,
optimiser, gradient scaler, loss states (TUFL thresholds), the RNG states of
every rank, the data positions of each loader stream, the iteration, the
non-finite counters and the best validation so far, plus the model description
and the resolved config. :func:`restore_run_state` puts it back, refusing a
checkpoint whose data stream would not continue exactly, and (unless forced) one
written with a different config (:func:`check_same_config`). File I/O and RNG
capture live in :mod:`tufl.runtime.checkpoint_files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from tufl.runtime.errors import ConfigError
from tufl.runtime.typed_config import to_plain
from tufl.train.config import RunConfig
from tufl.data.class_set import ModelClasses, checkpoint_classes
from tufl.data.loader import InfiniteLoader
from tufl.models.segmentor import Segmentor
from tufl.models.weights import WeightsError
from tufl.runtime import checkpoint_files as ckpt
from tufl.runtime.distributed import DistContext, all_true

STREAMS = ("source", "target", "template")

# "never": a run folder that holds a checkpoint is an error; "auto": resume from it when
# it holds one of the same config, start fresh when it holds none; "force": resume even
# from a checkpoint of a different config (the differing keys are printed).
ResumeMode = Literal["never", "auto", "force"]
RESUME_MODES: tuple[str, ...] = ("never", "auto", "force")

# Keys that change how a run is watched or where it runs, not what it computes: they
# may differ between a checkpoint and the run resuming from it.
OPERATIONAL_KEYS = frozenset({
    "experiment.device", "experiment.output_dir", "data.num_workers", "data.cache_dir",
    "eval.num_workers", "eval.batch_size", "train.progress", "train.tensorboard", "train.log_every",
    "train.checkpoint_every", "train.keep_checkpoints", "train.stop_signals", "train.auto_resume",
    "train.val_every", "train.inspect_every", "model.input_convention",
})


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


def resume_mode(requested: ResumeMode | bool | None, auto_resume: bool = False) -> ResumeMode:
    """The resume mode of a run: ``--resume [auto|force]`` (True = "auto"), else the config switch."""
    if requested is True:
        return "auto"
    if requested in (False, None, "never"):
        return "auto" if auto_resume else "never"
    if requested not in RESUME_MODES:
        raise ValueError(f"resume must be one of {RESUME_MODES}, got {requested!r}")
    return requested  # type: ignore[return-value]


def checkpoint_to_resume(paths: RunPaths, resume: ResumeMode | bool, ctx: DistContext
                         ) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint and its path when resuming (one line says which); refuses to
    overwrite a run when not resuming. A complete checkpoint whose save stopped before its rename
    is found under its pending name (``checkpoint_last.new.pt``); a damaged last checkpoint
    (truncated, unreadable) is reported and the previous one kept beside it is used. Call it
    holding the run folder's lock: it removes the temporary files of interrupted writes."""
    resume = resume_mode(resume)
    if resume != "never" and ctx.is_main:
        remove_stale_temporary_files(paths.root)
        if ckpt.finish_interrupted_save(paths.best):
            print(f"[tufl] --resume: completed the interrupted save of {paths.best} (its new version was "
                  "complete)", flush=True)
    versions = ckpt.checkpoint_versions(paths.last)
    if resume == "never":
        if versions:
            raise FileExistsError(
                f"{paths.root} already holds a run ({versions[0].name}); pass --resume auto to continue it "
                "or choose another experiment.output_dir"
            )
        return None
    if not versions:
        if ctx.is_main:
            print(f"[tufl] --resume: no checkpoint in {paths.root}, starting a new run", flush=True)
        return None
    problems = []
    for path in versions:
        try:
            state = ckpt.load_checkpoint(path)
        except WeightsError as error:
            problems.append(str(error))
            continue
        if ctx.is_main:
            print(resume_line(path, state, problems, paths.last), flush=True)
        return state, path
    raise WeightsError("cannot resume: no readable checkpoint: " + "; ".join(problems))


def resume_line(path: Path, state: dict[str, Any], problems: list[str], last: Path) -> str:
    """The line saying which checkpoint a run resumes from, and why when it is not ``last``."""
    detail = f"iteration {state.get('iteration', '?')}"
    if path == ckpt.pending_checkpoint(last):
        detail += f"; complete, but the run stopped before renaming it to {last.name}"
    if problems:
        return f"[tufl] --resume: {'; '.join(problems)}; resuming from {path} instead ({detail})"
    return f"[tufl] --resume: resuming from {path} ({detail})"


def remove_stale_temporary_files(run_dir: Path) -> list[Path]:
    """Delete the temporary files a killed run left in its folder (``.<name>.<random>.tmp``:
    writes that never reached their rename); returns them."""
    stale = [p for p in Path(run_dir).glob(".*.tmp") if p.is_file()] if Path(run_dir).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        print(f"[tufl] removed {len(stale)} temporary file(s) of an interrupted write in {run_dir}", flush=True)
    return stale


def flat_config(node: Any, prefix: str = "") -> dict[str, Any]:
    """A plain config dict as ``{"train.iters": 40000, ...}`` (lists stay values)."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flat_config(value, name) if isinstance(value, dict) else {name: value})
    return out


def config_differences(stored: dict[str, Any], current: dict[str, Any],
                       names: tuple[str, str] = ("checkpoint", "this run")) -> list[str]:
    """``key: checkpoint A, this run B`` (``names``) for each key of both configs whose values
    differ, operational keys (:data:`OPERATIONAL_KEYS`) aside. Keys only one side knows (a
    checkpoint of an older tufl) are not compared."""
    a, b = flat_config(to_plain(stored)), flat_config(to_plain(current))
    return [f"{key}: {names[0]} {a[key]!r}, {names[1]} {b[key]!r}"
            for key in sorted(a.keys() & b.keys()) if key not in OPERATIONAL_KEYS and a[key] != b[key]]


def check_same_config(state: dict[str, Any], path: Path, cfg: RunConfig, force: bool, ctx: DistContext) -> None:
    """Refuse to resume from a checkpoint of a different config (``force``: only report it)."""
    differences = config_differences(state.get("config") or {}, to_plain(cfg))
    if not differences:
        return
    listed = "\n  ".join(differences)
    if not force:
        raise ConfigError([
            f"{path} was written by a run of a different config; not resuming from it. Differing keys:\n  "
            f"{listed}\nUse the config it was written with, another experiment.output_dir, or "
            "--resume force to continue with this config anyway"
        ])
    if ctx.is_main:
        print(f"[tufl] --resume force: continuing {path} with a different config:\n  {listed}", flush=True)


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


def capture_run_state(cfg: RunConfig, ctx: DistContext, progress: Progress, micro_batch: int, classes: ModelClasses,
                      *, model: Segmentor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
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
        "classes": classes.to_record(),
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


# What inference needs of a checkpoint (checkpoint_best.pt keeps only these): the weights and
# how to read them, the class set, and the config (evaluation reads its data.val and eval).
INFERENCE_KEYS = ("iteration", "model", "model_config", "input_convention", "num_classes", "classes", "best",
                  "config")


def inference_state(state: dict[str, Any]) -> dict[str, Any]:
    """The part of a run's checkpoint that evaluation, prediction, export and the next stage use."""
    return {key: state[key] for key in INFERENCE_KEYS if key in state}


def check_same_classes(state: dict[str, Any], source: Path | str, classes: ModelClasses, role: str,
                       say: Callable[[str], None] = print, mine: str = "this run") -> None:
    """Refuse a checkpoint whose model predicts other classes (names or order) than ``classes``,
    those of ``mine`` (``role``: what the checkpoint is to it, e.g. "the checkpoint to resume"). A
    checkpoint of an earlier tufl that does not say is reported, not refused."""
    stored = checkpoint_classes(state, str(source))
    if stored is None:
        say(f"[tufl] note: {source} does not say which classes its model predicts; assuming "
            f"{classes.num_classes} classes ({classes.origin})")
        return
    differ = classes.differences(stored, mine, str(source))
    if differ:
        raise ConfigError([f"{source} ({role}) predicts other classes than {mine} ({classes.origin}):\n  "
                           + "\n  ".join(differ) + "\nUse the class file it was trained with, in the same order"])


def loader_positions(loaders: dict[str, InfiniteLoader | None]) -> dict[str, int]:
    """Batches consumed by each stream (0 for a stream the run does not use)."""
    positions = {}
    for key in STREAMS:
        loader = loaders.get(key)
        positions[key] = loader.batches_consumed if loader is not None else 0
    return positions


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, no permission); the run stops cleanly."""


class NonFiniteWeightsError(RuntimeError):
    """The model's weights hold NaN or inf: no checkpoint of them is written, the run stops."""


def nonfinite_tensors(tensors: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict holding NaN or inf (one host read per device)."""
    floats = [(name, t) for name, t in tensors.items() if isinstance(t, torch.Tensor) and t.is_floating_point()]
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, t in floats:
        by_device.setdefault(t.device, []).append((name, t))
    bad = []
    for items in by_device.values():
        flags = torch.stack([torch.isfinite(t).all() for _, t in items]).tolist()
        bad += [name for (name, _), ok in zip(items, flags) if not ok]
    return bad


def _nonfinite_problem(path: Path, state: dict[str, Any]) -> NonFiniteWeightsError | None:
    bad = nonfinite_tensors(state.get("model", {}))
    if not bad:
        return None
    kept = [p.name for p in ckpt.checkpoint_versions(path)]
    named = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return NonFiniteWeightsError(
        f"the run in {path.parent} has non-finite weights (NaN or inf) at iteration {state['iteration']}: {named}. "
        f"Not writing {path.name}; the checkpoints already written are intact ({', '.join(kept) or 'none yet'}). "
        "Training diverged: check optim.lr, set train.grad_clip or turn train.amp off, and start again from a "
        "checkpoint written before it")


def save_run_state(path: Path, state: dict[str, Any], ctx: DistContext, keep: int = 1) -> None:
    """Write ``state`` from the main rank (keeping ``keep`` versions), unless its weights are not
    finite (:class:`NonFiniteWeightsError`). Under DDP every rank learns whether it worked, so a
    failed write stops every rank rather than leaving them waiting."""
    error: OSError | NonFiniteWeightsError | None = None
    if ctx.is_main:
        error = _nonfinite_problem(path, state)
        try:
            if error is None:
                ckpt.save_checkpoint(path, state, keep)
        except OSError as exc:
            error = exc
    if all_true(error is None, ctx) and error is None:
        return
    if isinstance(error, NonFiniteWeightsError):
        raise error
    kept = [p.name for p in ckpt.checkpoint_versions(path)]
    reason = (error.strerror or str(error)) if error is not None else f"rank 0 could not write {path}"
    raise CheckpointWriteError(
        f"{reason}. Training stopped at iteration {state['iteration']} rather than going on without a way "
        f"back; the checkpoints already written are intact ({', '.join(kept) or 'none yet'}). Free space or "
        "fix the folder's permissions, then continue with --resume auto"
    ) from error
