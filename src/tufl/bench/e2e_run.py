"""One run of the end-to-end training benchmark (:mod:`tufl.bench.e2e_bench`): its config,
random starting weights, prepared copies, and the real Trainer timed over a window of
iterations, which gives the run's row.

Self-contained on purpose: with ``--before-src DIR`` this file is run by path (``runpy``)
in a fresh process against an older ``tufl`` package (the code before issue 20), so it
imports only what such a package also has, through :func:`_module` where a module has
moved since. Run as a script it takes the few options of one run and writes its row as
JSON to ``--row-file``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tufl.bench.data_bench import STANDARD_PIPELINES

# A run is data-bound when the step waits for data longer than this share of the iteration.
DATA_BOUND_SHARE = 0.10
PREPARED_FORMAT = "npy"
# The datasets whose files the benchmark generates (tufl.bench.data_bench).
GENERATED_DATASETS = tuple(dict.fromkeys(spec.dataset for spec in STANDARD_PIPELINES))


def _module(*names: str) -> Any:
    """The first of ``names`` that imports: this package's module, else the path an older
    package (``--before-src``) has it under."""
    for name in names[:-1]:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    return importlib.import_module(names[-1])


def _atomic() -> Any:
    return _module("tufl.runtime.atomic", "tufl.atomic")


# ------------------------------------------------------------------------ config and files


def load_run_config(config: str, overrides: Sequence[str]) -> Any:
    """The validated config of the file ``config`` with ``overrides`` (``KEY=VALUE``)."""
    from tufl.config import load_config
    from tufl.config.schema import Config

    return load_config(Config, config, list(overrides))


def check_generated(name: str) -> None:
    """Raise ValueError unless the benchmark generates the files of dataset ``name``."""
    if name not in GENERATED_DATASETS:
        raise ValueError(f"the end-to-end benchmark generates {sorted(GENERATED_DATASETS)} data, not {name!r}; "
                         "choose a config with those datasets")


def _div(size: Sequence[int] | None, divisor: int) -> tuple[int, int] | None:
    return None if size is None else (max(8, int(size[0]) // divisor), max(8, int(size[1]) // divisor))


def benchmark_config(config: str, overrides: Sequence[str], data_root: Path, run_dir: Path, iters: int,
                     device: str, workers: int | None = None, size_divisor: int = 1) -> Any:
    """The config of one benchmark run: ``config`` + ``overrides``, data roots under ``data_root``,
    no validation/TensorBoard/progress bar/periodic checkpoints, ``iters`` iterations in ``run_dir``.
    ``size_divisor`` shrinks the resizes and crops like the generated files."""
    from dataclasses import replace

    fixed = [f"experiment.output_dir={run_dir}", f"experiment.device={device}", f"train.iters={iters}",
             "data.val=null", "train.val_every=0", "train.tensorboard=false", "train.progress=false",
             "train.inspect_every=0", "train.auto_resume=false", f"train.checkpoint_every={10 ** 9}"]
    if workers is not None:
        fixed.append(f"data.num_workers={workers}")
    cfg = load_run_config(config, [*overrides, *fixed])
    sets = {}
    for key in ("source", "target"):
        ds = getattr(cfg.data, key)
        check_generated(ds.name)
        resize = _div(ds.resize, size_divisor) if size_divisor > 1 else ds.resize
        sets[key] = replace(ds, root=str(data_root / ds.name), split="train", list_file=None, resize=resize)
    if size_divisor > 1:
        sets["source_aug"] = replace(cfg.data.source_aug, crop_size=_div(cfg.data.source_aug.crop_size, size_divisor))
        sets["target_views"] = replace(cfg.data.target_views,
                                       crop_size=_div(cfg.data.target_views.crop_size, size_divisor))
    return replace(cfg, data=replace(cfg.data, **sets))


def write_random_weights(cfg: Any, path: Path) -> None:
    """A tufl checkpoint of randomly initialised weights for ``cfg.model`` (the benchmark's
    stand-in for the stage-one/source-only checkpoint a config starts from)."""
    from dataclasses import asdict, replace

    from tufl.models.build import build_model

    atomic_path = _atomic().atomic_path
    checkpoint_format = _module("tufl.runtime.checkpoint_files", "tufl.models.weights").CHECKPOINT_FORMAT

    model_cfg = replace(cfg.model, pretrained=None, pretrained_format="auto", input_convention="auto")
    model = build_model(model_cfg, training=True).model
    state = {"format": checkpoint_format, "model": model.state_dict(), "model_config": asdict(model_cfg),
             "input_convention": model.convention.name, "num_classes": cfg.model.num_classes}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def write_prepared_copies(cfg: Any, workers: int) -> dict[str, float]:
    """Write the prepared copies of the run's source and target datasets (``data.prepared_dir``)
    with :func:`tufl.data.prepared.prepare`; returns the seconds each took. Called by the
    parent, with today's package (code before issue 20 has no prepared copies)."""
    from tufl.data.prepared import prepare
    from tufl.train.builders import open_training_datasets

    seconds = {}
    for domain, base in open_training_datasets(cfg).items():
        start = time.perf_counter()
        prepare(base, cfg.data.prepared_dir, PREPARED_FORMAT, workers, progress=False)
        seconds[domain] = round(time.perf_counter() - start, 2)
    return seconds


# ------------------------------------------------------------------------ the timed run


class WaitTimedLoader:
    """Adds up the seconds spent in ``next`` of a training loader: the data wait of a
    Trainer without its own measure (the code before issue 20, ``--before-src``)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.seconds = 0.0

    def __iter__(self) -> WaitTimedLoader:
        return self

    def __next__(self) -> Any:
        start = time.perf_counter()
        try:
            return next(self.loader)
        finally:
            self.seconds += time.perf_counter() - start

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setting(cfg: Any, dotted: str) -> Any:
    """A config value, or None where this version of the schema has no such key."""
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part, None)
    return node


def resolved_settings(trainer: Any) -> dict[str, Any]:
    """What the run really used: prepared copies per domain, where the strong view was
    built, the optimiser kernel, mixed precision."""
    def prepared(samples: Any) -> bool:
        base = getattr(samples, "base", None)
        return getattr(base, "_prepared", None) is not None

    target = trainer.data.target
    # code before issue 20 had no strong_view setting: it always built the view on the workers
    strong_view = (getattr(target, "strong_view", None) or getattr(getattr(target, "pairs", None), "strong_view", None)
                   or "worker")
    groups = trainer.optimizer.param_groups
    return {"prepared_used": {"source": prepared(trainer.data.source), "target": prepared(target)},
            "strong_view_used": strong_view,
            "fused_used": all(bool(g.get("fused")) for g in groups),
            "amp_used": str(trainer.amp_dtype).removeprefix("torch.") if trainer.amp else "off"}


class _WindowDone(Exception):
    """Raised by the timed step once the timed window is over: ends the run early."""


def _wrap_loaders(trainer: Any) -> list[WaitTimedLoader]:
    """The trainer's loaders, each wrapped in a :class:`WaitTimedLoader` (in place)."""
    wrapped = []
    for name in ("source_loader", "target_loader", "template_loader"):
        if getattr(trainer, name, None) is not None:
            wrapped.append(WaitTimedLoader(getattr(trainer, name)))
            setattr(trainer, name, wrapped[-1])
    return wrapped


def _run_window(trainer: Any, warmup: int, iters: int, wrapped: Sequence[WaitTimedLoader]) -> dict[str, float]:
    """Run the trainer until the window ``warmup .. warmup + iters - 1`` is over; returns the
    clock and the wrapped loaders' wait at its start and end."""
    marks: dict[str, float] = {}
    step = trainer.train_step
    calls = 0

    def timed_step() -> Any:
        nonlocal calls
        if calls in (warmup, warmup + iters):
            _synchronize(trainer.device)
            key = "start" if calls == warmup else "end"
            marks[key] = time.perf_counter()
            marks[f"wait_{key}"] = sum(loader.seconds for loader in wrapped)
            if key == "end":
                raise _WindowDone
        calls += 1
        return step()

    trainer.train_step = timed_step
    try:
        trainer.run()
    except _WindowDone:
        pass
    return marks


def time_trainer(cfg: Any, warmup: int, iters: int) -> dict[str, Any]:
    """Run the real Trainer (``cfg.train.iters`` > ``warmup + iters``) and time iterations
    ``warmup .. warmup + iters - 1``; the run ends there, without its final checkpoint.

    Each iteration is timed from the start of one ``train_step`` to the start of the
    next (everything of the loop: data, step, logging); the device is synchronised at
    both ends of the window. The data wait is the time spent in ``next(loader)``: the
    trainer's own measure (``trainer.timing``, :mod:`tufl.train.timing`), or where it has
    none (older code) the loaders wrapped in :class:`WaitTimedLoader`.
    """
    from tufl.train.engine import Trainer

    if cfg.train.iters <= warmup + iters:
        raise ValueError(f"train.iters={cfg.train.iters} must exceed warm-up + timed iterations ({warmup + iters})")
    trainer = Trainer(cfg)
    own_timing = getattr(trainer, "timing", None)
    marks = _run_window(trainer, warmup, iters, _wrap_loaders(trainer) if own_timing is None else [])
    seconds = (marks["end"] - marks["start"]) / iters
    if own_timing is not None:
        wait = sum(own_timing.data_wait_seconds[warmup:warmup + iters]) / iters
    else:
        wait = (marks["wait_end"] - marks["wait_start"]) / iters
    share = wait / seconds if seconds > 0 else 0.0
    return {
        "seconds_per_iter": seconds, "iters_per_second": 1.0 / seconds if seconds > 0 else float("inf"),
        "data_wait_per_iter": wait, "data_wait_share": share,
        "bound": "data" if share > DATA_BOUND_SHARE else "step",
        **resolved_settings(trainer),
        "device": str(trainer.device),
        "device_name": torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else "cpu",
    }


def run_single(label: str, config: str, overrides: Sequence[str], data_root: Path, device: str, warmup: int,
               iters: int, workers: int | None = None, size_divisor: int = 1) -> dict[str, Any]:
    """One benchmark run in this process, in a temporary folder; returns its row."""
    from dataclasses import replace

    with tempfile.TemporaryDirectory(prefix="tufl-e2e-run-") as tmp:
        cfg = benchmark_config(config, overrides, Path(data_root), Path(tmp) / "run", warmup + iters + 1, device,
                               workers, size_divisor)
        if cfg.model.pretrained:
            weights = Path(tmp) / "random_init.pt"
            write_random_weights(cfg, weights)
            cfg = replace(cfg, model=replace(cfg.model, pretrained=str(weights)))
        row = {"pipeline": label, "config": config, "overrides": list(overrides),
               "workers": cfg.data.num_workers, "warmup": warmup, "iters": iters,
               "mode": cfg.experiment.mode, "arch": cfg.model.arch, "batch_size": cfg.data.batch_size,
               "crop": list(cfg.data.source_aug.crop_size), "size_divisor": size_divisor,
               "prepared_dir": _setting(cfg, "data.prepared_dir"),
               "strong_view": _setting(cfg, "data.target_views.strong_view"),
               "fused": _setting(cfg, "optim.fused"), "compile": _setting(cfg, "train.compile"),
               "channels_last": cfg.train.channels_last, "amp": cfg.train.amp,
               "threads": torch.get_num_threads(), "torch": torch.__version__}
        row.update(time_trainer(cfg, warmup, iters))
    return row


def main(argv: Sequence[str] | None = None) -> int:
    """One run from the options the parent (:func:`tufl.bench.e2e_bench.launch_run`) passes;
    the row is written as JSON to ``--row-file``."""
    parser = argparse.ArgumentParser(prog="python -m tufl.bench.e2e_run")
    parser.add_argument("--label", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--row-file", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--iters", type=int, required=True)
    parser.add_argument("--size-divisor", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    row = run_single(args.label, args.config, args.overrides, Path(args.data_root), args.device, args.warmup,
                     args.iters, args.workers, args.size_divisor)
    Path(args.row_file).write_text(json.dumps(row))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
