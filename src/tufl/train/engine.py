"""The training loop: source-only, stage one (TUFL) and stage two (CIM).

One :class:`Trainer` per run directory. It builds everything from a validated
:class:`~tufl.config.schema.Config`, prints and saves what it is about to do,
then loops: learning-rate schedule, micro-batches with gradient accumulation,
mixed precision, logging, periodic checkpoints and validation. The optimiser step,
non-finite steps dropped on the device without a host synchronisation, is
:mod:`tufl.train.step`; the iteration timing and the duration estimate printed after
the first iterations are :mod:`tufl.train.timing`. ``resume="auto"`` restores the last
checkpoint of the same config (model, optimiser, scaler, loss thresholds, RNG states, data
positions, counters; see :mod:`tufl.train.run_state`), so an interrupted run ends with exactly
the weights of an uninterrupted one. A stop signal (SIGTERM, SIGUSR1) ends the run at the end
of the iteration with a checkpoint (:mod:`tufl.runtime.stop_signals`); bad samples are
accounted in :mod:`tufl.train.bad_samples`. The run holds its folder's lock from before it
reads anything there until it ends, and its last writes never hide the error that ended it
(:mod:`tufl.train.run_folder`). The start-up summary is :mod:`tufl.train.run_summary`,
validation :mod:`tufl.evaluation.validation`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tufl.data.device_views import finish_target_batch
from tufl.data.loader import InfiniteLoader
from tufl.models.build import build_model
from tufl.models.segmentor import Segmentor
from tufl.models.weights import read_weights
from tufl.objective import BuildContext, build_objective
from tufl.objective.pseudo_labels import frozen_labeller
from tufl.runtime.atomic import naming_failures
from tufl.runtime.distributed import DistContext, init_distributed, shutdown
from tufl.runtime.progress import progress_bar, say
from tufl.runtime.run_log import MetricsLog
from tufl.runtime.stop_signals import Preempted, StopSignals
from tufl.train.bad_samples import BadSamples
from tufl.train.builders import build_classes, build_train_data, build_validation
from tufl.train.config import RunConfig
from tufl.train.log_line import bar_postfix, save_inspection, train_values
from tufl.train.optim import build_optimizer, set_kernel, set_learning_rate
from tufl.train.setup import place_model, seed_process
from tufl.train.run_state import (STREAMS, Progress, ResumeMode, RunPaths, capture_run_state, check_same_classes,
                                  check_same_config, checkpoint_to_resume, inference_state, loader_positions,
                                  restore_run_state, resume_mode, save_run_state)
from tufl.train.run_folder import EndWrite, finish_writes, lock_run_folder, release_lock
from tufl.train.run_summary import announce_run, record_outcome, run_summary
from tufl.train.step import (DeviceSnapshot, LogWindow, NonFiniteCounters, NonFiniteLossError, OptimizerStep, StepLog,
                             all_ranks_finite, amp_settings, finish_step, grads_finite, stack_logs, step_generator)
from tufl.train.streams import open_streams, to_device
from tufl.train.timing import BAR_FORMAT, RunTiming

__all__ = ["NonFiniteLossError", "Trainer", "amp_settings", "step_generator", "train"]


class Trainer:
    """Trains one run; see the module docstring."""

    def __init__(self, cfg: RunConfig, resume: ResumeMode | bool = False, ctx: DistContext | None = None,
                 stop: StopSignals | None = None) -> None:
        self.cfg = cfg
        self.stop = stop  # None: run() catches the stop signals itself, from its first iteration
        self.ctx = ctx or init_distributed(cfg.experiment.device)
        self.paths = RunPaths(cfg.experiment.run_dir)
        self.device = self.ctx.device
        self.log: MetricsLog | None = None
        self.source_loader = self.target_loader = self.template_loader = None
        # held until the run ends (or the trainer is dropped): taken before anything in the folder is read
        self.lock = lock_run_folder(self.paths.root, self.ctx)
        self._unlock = weakref.finalize(self, release_lock, self.lock)
        try:
            self._set_up(resume_mode(resume, cfg.train.auto_resume))
        except BaseException:
            self.close()
            raise

    def _set_up(self, resume: ResumeMode) -> None:
        cfg = self.cfg
        resumed = checkpoint_to_resume(self.paths, resume, self.ctx)
        state, resumed_from = resumed if resumed is not None else (None, None)
        seed_process(cfg.experiment.seed, cfg.train.deterministic, self.device)
        init_weights = read_weights(cfg.model.pretrained) if cfg.model.pretrained else None
        self._build_network(init_weights)
        if state is not None:
            check_same_classes(state, resumed_from, self.classes, "the checkpoint to resume", say=self._say)
            check_same_config(state, resumed_from, self.cfg, force=resume == "force", ctx=self.ctx)
        self.model, self.ddp, self.train_forward = place_model(self.model, self.cfg.train, self.ctx)
        self._build_training(init_weights)
        positions = self._restore(state, resumed_from) if state is not None else dict.fromkeys(STREAMS, 0)
        self._open_loaders(positions)
        if self.ctx.is_main:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            self.bad_samples.start(self.paths.root, resumed=state is not None)
            with naming_failures(self.paths.root / "metrics.jsonl"):
                self.log = MetricsLog(self.paths.root, self.iteration if state is not None else None,
                                      tensorboard=self.cfg.train.tensorboard)

    def close(self) -> None:
        """Stop the loaders' workers, close the metrics log, release the run folder (as run() does)."""
        self._close_loaders()
        self._close_log()
        self._unlock()

    def _close_loaders(self) -> None:
        for loader in (self.source_loader, self.target_loader, self.template_loader):
            if loader is not None:
                loader.close()

    def _close_log(self) -> None:
        log, self.log = self.log, None
        if log is not None:
            log.close()

    # ------------------------------------------------------------------ set-up

    def _build_network(self, init_weights: dict[str, Any] | None) -> None:
        """The student network from ``model.pretrained``; the run records its config with the
        input convention resolved (the caller's config is unchanged)."""
        built = build_model(self.cfg.model, training=True, weights=init_weights)
        self.model: Segmentor = built.model
        self.weights_format = built.weights_format
        self.load_report = built.load_report
        self.cfg = cfg = dataclasses.replace(  # type: ignore[type-var]
            self.cfg, model=dataclasses.replace(self.cfg.model, input_convention=self.model.convention.name))
        self.classes = build_classes(cfg)  # stored in every checkpoint
        if self.weights_format == "tufl":  # a stage starting from the previous one's checkpoint
            check_same_classes(init_weights, cfg.model.pretrained, self.classes, "model.pretrained", say=self._say)

    def _build_training(self, init_weights: dict[str, Any] | None) -> None:
        """Data, objective, validation, optimiser and the step's helpers."""
        cfg = self.cfg
        labeller = frozen_labeller(cfg, init_weights, self.device)  # stage two, online pseudo-labels
        self.data = build_train_data(cfg, self.ctx, self.paths.root)
        parts = BuildContext(cfg, self.model, self.data, init_weights, self.device)
        self.objective = build_objective(parts, labeller).to(self.device)
        self.validation = build_validation(cfg, self.ctx)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.amp, self.amp_dtype = amp_settings(self.device, cfg.train.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.fused = bool(self.optimizer.param_groups[0].get("fused"))
        self.update = OptimizerStep(self.optimizer, self.scaler, list(self.model.parameters()), cfg.train.grad_clip)
        self.snapshot = DeviceSnapshot.of(self.objective, self.model)
        self.nonfinite = NonFiniteCounters(self.device)
        self.timing = RunTiming.for_device(self.device)  # per-iteration and data-wait seconds
        self.iteration = 0
        self.best: dict[str, Any] = {"miou": None, "iteration": None}
        self.bad_samples = BadSamples({"source": len(self.data.source), "target": len(self.data.target)},
                                      cfg.data.max_bad_fraction, self.ctx, say=say)

    def _restore(self, state: dict[str, Any], path: Path) -> dict[str, int]:
        """Put a checkpoint back; returns the data position of each loader stream."""
        restored = restore_run_state(state, path, self.ctx, self.data.micro_batch, **self._checkpointed_parts())
        self.iteration = restored.iteration
        self.nonfinite.load(restored.counters)
        set_kernel(self.optimizer, self.fused)  # the checkpoint's groups name the kernel they ran
        self.best = restored.best
        self.bad_samples.load_state_dict(state.get("bad_samples", {}))
        return restored.positions

    def _open_loaders(self, positions: dict[str, int]) -> None:
        self.source_loader, self.target_loader, self.template_loader = open_streams(
            self.cfg, self.data, self.ctx, positions, self.objective.needs_target)

    def _checkpointed_parts(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer, "scaler": self.scaler,
                "objective": self.objective}

    def _announce(self) -> None:
        info = run_summary(self.cfg, self.data, self.optimizer, weights_format=self.weights_format,
                           input_convention=self.model.convention.name, world_size=self.ctx.world_size,
                           device=self.device, amp_dtype=self.amp_dtype if self.amp else None,
                           validation=self.validation)
        announce_run(self.paths.root, self.cfg, info, self.load_report)

    # ------------------------------------------------------------------ loop

    @property
    def counters(self) -> dict[str, int]:
        """The non-finite step counters as plain ints (a host read: log lines and checkpoints)."""
        return self.nonfinite.read()

    def _forward(self) -> Any:
        return self.train_forward

    def _next(self, loader: InfiniteLoader) -> dict[str, Any]:
        with self.timing.data_wait():
            return next(loader)

    def _micro_batches(self) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        bad = self.bad_samples
        for _ in range(self.cfg.train.accumulate):
            source = self._to_device(bad.take("source", self._next(self.source_loader)))
            if self.template_loader is not None:
                template = self._to_device(bad.take("source", self._next(self.template_loader)))
                source["template_image"], source["template_label"] = template["image"], template["label"]
            target = (self._to_device(bad.take("target", self._next(self.target_loader)))
                      if self.target_loader is not None else None)
            target = target if target is None else finish_target_batch(target, self.cfg.data.target_views)
            yield source, target

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return to_device(batch, self.device, self.cfg.train.channels_last)

    def train_step(self) -> StepLog:
        """One optimiser step, queued without a host read. A step whose loss (on any rank) or
        gradients are not finite, or whose update is not, leaves no trace and is counted
        (:mod:`tufl.train.step`)."""
        cfg = self.cfg
        lr = set_learning_rate(self.optimizer, self.iteration, cfg.train.iters, cfg.optim)
        self.snapshot.save()  # thresholds and BatchNorm statistics change in the forward pass
        self.optimizer.zero_grad(set_to_none=True)
        logs: Tensor | None = None
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        forward = self._forward()
        for micro, (source, target) in enumerate(self._micro_batches()):
            last = micro == cfg.train.accumulate - 1
            sync = contextlib.nullcontext() if (self.ddp is None or last) else self.ddp.no_sync()
            generator = step_generator(cfg.experiment.seed, self.iteration, self.ctx.rank, micro)
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                    out = self.objective(forward, source, target, generator)
                loss = out.loss / cfg.train.accumulate
                finite &= torch.isfinite(loss)
                self.scaler.scale(loss).backward()
            if out.mix is not None:
                self._last_inputs = (source["image"], target["weak"], out.mix)
            keys, values = stack_logs({"loss": out.loss, **out.logs})
            logs = values / cfg.train.accumulate if logs is None else logs + values / cfg.train.accumulate
        if self.update.checks_gradients():
            finite &= grads_finite(self.model.parameters(), self.device)
        # the optimiser step, undone on the device when it leaves a weight non-finite (step.py)
        finite, grad_norm = finish_step(all_ranks_finite(finite, self.ctx), self.update, self.snapshot, self.nonfinite)
        self.objective.after_step(self.model, finite, self.iteration + 1)  # EMA teacher
        if grad_norm is not None:
            keys, logs = (*keys, "grad_norm"), torch.cat([logs, grad_norm.detach().float().reshape(1)])
        return StepLog(keys, logs, finite, lr)

    def run(self) -> Path:
        """Train to ``train.iters``; returns the run directory. Raises :class:`Preempted` after
        writing a checkpoint when a stop signal arrives (see :mod:`tufl.runtime.stop_signals`).
        The run folder is released when it ends, however it ends."""
        cfg = self.cfg
        bar = progress_bar(total=cfg.train.iters, initial=self.iteration, desc=f"{cfg.experiment.mode}",
                           disable=not (cfg.train.progress and self.ctx.is_main),
                           dynamic_ncols=True, mininterval=1.0, bar_format=BAR_FORMAT)  # options of a terminal's bar
        started = time.time()
        own_stop = self.stop is None
        stop = StopSignals(cfg.train.stop_signals, self.ctx) if own_stop else self.stop
        failure: BaseException | None = None
        try:
            if own_stop:
                stop.__enter__()
            if self.ctx.is_main:
                self._announce()
            self._loop(stop, bar, started)
        except BaseException as error:
            failure = error
            raise
        finally:
            if own_stop:
                stop.__exit__()
            bar.close()
            self._end(failure)
        if self.ctx.is_main:
            print(f"[tufl] finished {cfg.train.iters} iterations in {time.time() - started:.0f} s; "
                  f"checkpoint: {self.paths.last}{self.bad_samples.summary_note(self.paths.root)}")
        return self.paths.root

    def _loop(self, stop: StopSignals, bar: Any, started: float) -> None:
        cfg = self.cfg
        self.model.train()
        window = LogWindow()
        self.timing.start()
        while self.iteration < cfg.train.iters:
            window.add(self.train_step())  # values stay on the device until logged
            self.iteration += 1
            bar.update(1)
            self.timing.iteration_done()
            estimate = self.timing.estimate_line(cfg.train.iters - self.iteration)
            if estimate and self.ctx.is_main:
                say(estimate)
            if self.iteration % cfg.train.log_every == 0 or self.iteration == cfg.train.iters:
                self._log_window(window, bar, started)
                window.reset()
            with self.timing.paused():  # not part of the iteration time
                if cfg.train.inspect_every and self.iteration % cfg.train.inspect_every == 0:
                    self._save_inspection()
                # Validate before checkpointing, so the checkpoint's best-so-far is current.
                validate_now = cfg.train.val_every and self.iteration % cfg.train.val_every == 0
                if self.validation is not None and (validate_now or self.iteration == cfg.train.iters):
                    self._validate()
                saved = self.iteration % cfg.train.checkpoint_every == 0 or self.iteration == cfg.train.iters
                if saved:
                    self.save(self.paths.last, keep=cfg.train.keep_checkpoints)
            signal_name = stop.stop_requested()
            if signal_name and self.iteration < cfg.train.iters:
                if not saved:
                    self.save(self.paths.last, keep=cfg.train.keep_checkpoints)
                raise Preempted(signal_name, self.iteration, str(self.paths.last))

    def _end(self, failure: BaseException | None) -> None:
        """The writes that end the run, which never hide the error that ended it; then release the folder."""
        root = self.paths.root
        writes: list[EndWrite] = [(root / "metrics.jsonl", self._close_log)]
        if self.ctx.is_main:
            writes += [(root / "bad_samples.json", lambda: self.bad_samples.write(root)),
                       (root / "run_info.json", lambda: record_outcome(root, self.iteration, self.bad_samples.counts()))]
        try:
            self._close_loaders()
            finish_writes(writes, failure)
        finally:
            self._unlock()

    def _merge_bad_samples(self) -> None:
        self.bad_samples.note("source", self.data.source.base.take_skipped())  # long-tail fetches (this process)
        self.bad_samples.merge()  # collective under DDP: every rank logs and saves at the same iterations

    def _log_window(self, window: LogWindow, bar: Any, started: float) -> None:
        """Write the window's averages (the host reads of the step values happen here), then stop
        the run after train.max_nonfinite skipped steps in a row (every rank: the flags agree)."""
        self._merge_bad_samples()
        timing = self.timing.window()
        if self.log is not None:
            self._write_log_line(window, timing, bar, started)
        self.nonfinite.check(self.cfg.train.max_nonfinite, self.iteration)

    def _write_log_line(self, window: LogWindow, timing: dict[str, float], bar: Any, started: float) -> None:
        values = train_values(window, timing, self.counters["nonfinite_skipped"], self.objective,
                              self.bad_samples.counts(), started)
        self._log(self.iteration, "train", values)
        bar.set_postfix(bar_postfix(values), refresh=False)

    def _log(self, iteration: int, kind: str, values: dict[str, Any]) -> None:
        assert self.log is not None
        with naming_failures(self.log.path):  # a full disk: the error names metrics.jsonl
            self.log.write(iteration, kind, values)

    def _validate(self) -> None:
        # Every rank evaluates its shard; the confusion matrix is summed over ranks, so
        # all ranks see the same mIoU and take the same "save best" decision.
        result = self.validation.run(self.model)
        self.model.train()
        miou = result.miou
        improved = self.best["miou"] is None or miou > self.best["miou"]
        if improved:
            self.best = {"miou": miou, "iteration": self.iteration}
        if self.ctx.is_main:
            self._log(self.iteration, "val", {"miou": miou, "iou": dict(zip(result.class_names, result.iou)),
                                              "best_miou": self.best["miou"]})
            say(f"[tufl] iteration {self.iteration}: val mIoU {100 * miou:.2f} "
                f"(best {100 * self.best['miou']:.2f} at {self.best['iteration']})")
        if improved:
            self.save(self.paths.best, inference_only=True)

    def _save_inspection(self) -> None:
        last = getattr(self, "_last_inputs", None)
        if last is not None and self.ctx.is_main:
            save_inspection(self.paths.root, self.iteration, last, self.cfg.model.num_classes)

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: Path, keep: int = 1, inference_only: bool = False) -> None:
        """Checkpoint the run to ``path`` (keeping ``keep`` versions); with ``inference_only`` only
        what evaluation and the next stage need (:data:`~tufl.train.run_state.INFERENCE_KEYS`).
        Collective under DDP: every rank takes part."""
        self._merge_bad_samples()
        loaders = {"source": self.source_loader, "target": self.target_loader, "template": self.template_loader}
        progress = Progress(self.iteration, self.counters, self.best, loader_positions(loaders))
        state = capture_run_state(self.cfg, self.ctx, progress, self.data.micro_batch, self.classes,
                                  **self._checkpointed_parts())
        state["bad_samples"] = self.bad_samples.state_dict()
        save_run_state(path, inference_state(state) if inference_only else state, self.ctx, keep)

    def _say(self, line: str) -> None:
        if self.ctx.is_main:
            print(line, flush=True)


def train(cfg: RunConfig, resume: ResumeMode | bool = False) -> Path:
    """Build a :class:`Trainer` for ``cfg`` and run it; returns the run directory."""
    ctx = init_distributed(cfg.experiment.device)
    try:
        # caught from the start: a signal during the set-up stops the run after its first iteration
        with StopSignals(cfg.train.stop_signals, ctx) as stop:
            return Trainer(cfg, resume=resume, ctx=ctx, stop=stop).run()
    finally:
        shutdown(ctx)
