"""The engine's config sections, ``experiment`` (what run this is) and ``train`` (the loop),
and :class:`RunConfig`, the sections of the experiment config the engine reads.

The experiment config itself is assembled above the engine (:mod:`tufl.config.schema`);
the engine takes any object with these sections.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tufl.data.config import DataConfig
from tufl.evaluation.options import EvalConfig
from tufl.mixing.config import MixConfig
from tufl.models.build import ModelConfig
from tufl.objective.mic import MicConfig
from tufl.objective.pseudo_labels import PseudoLabelConfig
from tufl.objective.registry import Mode
from tufl.runtime.checks import MAX_BATCH_SIZE, MAX_ITERS, MAX_SEED, above, count_within
from tufl.runtime.stop_signals import signal_number
from tufl.train.optim import OptimConfig


@dataclass(frozen=True)
class ExperimentConfig:
    """Run identity: name, output folder, seed, training mode, device."""

    # Name of the run (default output folder runs/<name>).
    name: str = "experiment"
    # Folder of checkpoints, logs and the resolved config; null = runs/<name>.
    output_dir: str | None = None
    # Seed of model initialisation, data order and augmentation, and mixing draws (0..2^32-1).
    seed: int = 0
    # source_only: supervised only; stage1: + TUFL; stage2: + cross-domain mixing.
    mode: Mode = "stage1"
    # "auto" (CUDA when available), "cpu", "cuda", "cuda:N" (e.g. "cuda:1") or "mps"; a
    # device that is absent is an error when the run starts.
    device: str = "auto"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("runs") / self.name

    def problems(self) -> list[str]:
        out = count_within("seed", self.seed, 0, MAX_SEED)
        if not DEVICE_SPEC.fullmatch(self.device):
            out.append(f"device: must be auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps, got {self.device!r}")
        key = "output_dir" if self.output_dir else "name"
        return out + [f"{key}: {problem}" for problem in folder_problems(self.run_dir)]


# The device specs experiment.device takes; whether the device exists is checked when the run starts.
DEVICE_SPEC = re.compile(r"auto|cpu|mps|cuda(?::\d+)?")


def folder_problems(path: Path) -> list[str]:
    """Why ``path`` cannot be (or become) a folder: it, or the nearest of its parents that exists,
    is something else (a file, a device such as /dev/null). A path this process may not look at
    (a stored config's folder on another machine) is left to the run that writes there."""
    for probe in (path, *path.parents):
        try:
            if not probe.exists():
                continue
            if probe.is_dir():
                return []
        except OSError:
            return []
        kind = "a character device" if probe.is_char_device() else "not a folder"
        where = "" if probe == path else f" (a parent of {path})"
        return [f"{probe}{where} exists and is {kind}; give a folder"]
    return []


@dataclass(frozen=True)
class TrainConfig:
    """The training loop."""

    # Optimiser steps of the run (the poly schedule ends here); 1..10^9, like every
    # iteration count of this section.
    iters: int = 40000
    # Micro-batches per optimiser step (gradient accumulation); must divide data.batch_size.
    accumulate: int = 1
    # Mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling).
    amp: bool = True
    # channels_last memory format (faster convolutions on recent GPUs).
    channels_last: bool = False
    # Clip the global gradient norm to this value (a finite number > 0); null = off.
    grad_clip: float | None = None
    # Source, weak and strong views through the network in one forward pass.
    concat_forward: bool = True
    # torch.compile the segmentor's training forward (checkpoints, validation and inference
    # use the plain module). Off by default until measured faster and stable on a GPU: the
    # first iterations then compile for minutes, and a new input shape compiles again.
    compile: bool = False
    # Convert BatchNorm to SyncBatchNorm under multi-GPU training.
    sync_bn: bool = False
    # torch.use_deterministic_algorithms (bitwise reproducible on CPU; slower on GPU).
    deterministic: bool = False
    # Log averaged losses every N iterations (JSONL, TensorBoard, progress bar).
    log_every: int = 10
    # Write checkpoint_last.pt every N iterations (and at the end).
    checkpoint_every: int = 1000
    # Checkpoints kept: checkpoint_last.pt and its keep_checkpoints - 1 previous versions
    # (checkpoint_last.1.pt the newest); --resume falls back to them when the last one is damaged.
    # 1..1000.
    keep_checkpoints: int = 2
    # Signals that stop the run cleanly: finish the iteration, write checkpoint_last.pt,
    # exit with status 3 (a second signal exits at once); [] = default signal handling.
    # SIGKILL and SIGSTOP (uncatchable), SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGCHLD are refused.
    stop_signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")
    # Resume from the run folder's checkpoint when it holds one of the same config (as
    # `--resume auto`); a checkpoint of another config is refused, naming the differing keys.
    auto_resume: bool = False
    # Validate on data.val every N iterations (0 = only at the end).
    val_every: int = 2000
    # Stop after this many non-finite steps in a row (loss on any rank, gradients, or weights
    # after the update; each is skipped without a trace). Checked when a log line is written
    # (no host read per step): the run stops at the first log line after max_nonfinite
    # skipped steps in a row.
    max_nonfinite: int = 20
    # Save a PNG grid of the mixed stage-two inputs every N iterations (0 = off).
    inspect_every: int = 0
    # Show a progress bar (rank 0).
    progress: bool = True
    # Also write TensorBoard scalars when the tensorboard package is installed.
    tensorboard: bool = True

    def problems(self) -> list[str]:
        out = count_within("accumulate", self.accumulate, 1, MAX_BATCH_SIZE)
        out += count_within("keep_checkpoints", self.keep_checkpoints, 1, MAX_KEEP_CHECKPOINTS)
        for name in ("iters", "log_every", "checkpoint_every", "max_nonfinite"):
            out += count_within(name, getattr(self, name), 1, MAX_ITERS)
        for name in ("val_every", "inspect_every"):
            out += count_within(name, getattr(self, name), 0, MAX_ITERS, " (0 = off)")
        if self.grad_clip is not None:
            out += above("grad_clip", self.grad_clip, 0.0, note=" or null")
        return out + stop_signal_problems(self.stop_signals)


MAX_KEEP_CHECKPOINTS = 1000
# Signals a stop request cannot be: the uncatchable ones, the ones that report a crash (a
# handler cannot return from them) and the one every data-loading worker sends when it ends.
UNSUITABLE_SIGNALS = {"SIGKILL": "cannot be caught", "SIGSTOP": "cannot be caught",
                      "SIGSEGV": "reports a crash", "SIGBUS": "reports a crash", "SIGFPE": "reports a crash",
                      "SIGILL": "reports a crash", "SIGCHLD": "arrives whenever a data-loading worker ends"}


def stop_signal_problems(names: tuple[str, ...]) -> list[str]:
    """``train.stop_signals``: each a known signal that a handler can catch and return from."""
    out = []
    for name in names:
        try:
            number = signal_number(name)
        except ValueError as error:
            out.append(f"stop_signals: {error}")
            continue
        canonical = signal.Signals(number).name
        if canonical in UNSUITABLE_SIGNALS:
            out.append(f"stop_signals: {name} {UNSUITABLE_SIGNALS[canonical]}, so it cannot stop a run "
                       "(e.g. SIGTERM, SIGUSR1, SIGINT)")
    return out


class RunConfig(Protocol):
    """The sections of an experiment config (:mod:`tufl.config.schema`) the engine reads."""

    experiment: ExperimentConfig
    model: ModelConfig
    data: DataConfig
    loss: Any  # tufl.losses.registry.LossConfig, made from the loss registry
    mix: MixConfig
    mic: MicConfig
    pseudo_labels: PseudoLabelConfig
    optim: OptimConfig
    train: TrainConfig
    eval: EvalConfig
