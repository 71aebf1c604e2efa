"""End-to-end training iterations: what a user waits for in a whole run.

``tufl benchmark train --end-to-end`` writes generated data at the datasets' native
sizes (the generators of ``tufl benchmark data``: GTA5 1914x1052, SYNTHIA 1280x760,
Cityscapes 2048x1024), loads a shipped config, points its data roots at the generated
files, turns validation, TensorBoard and periodic checkpoints off, and runs the real
:class:`tufl.train.engine.Trainer` with the configured loader workers for ``warmup +
iters`` iterations in a temporary folder (fresh process per run). Measured over the
timed iterations: seconds per iteration (the device is synchronised at both ends of
the window), and the time the step spent waiting in ``next(loader)`` for data; the run
is "data"-bound when that wait is above :data:`DATA_BOUND_SHARE` of the iteration.

``--compare`` runs, side by side, the pipeline before issue 20 (original files, strong
view built on the workers) and after it (a prepared copy written first, strong view on
the training device); ``--before-set``/``--after-set`` add settings to one side only,
and ``--before-src DIR`` runs the "before" side with the code of another checkout.

This file stays one module (over the usual size): with ``--before-src`` it is run by path
against an older ``tufl`` package, so it may import only what such a package has.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tufl.bench.data_bench import STANDARD_PIPELINES, PipelineSpec, write_synthetic
from tufl.bench.data_bench import _shrink as shrink_spec


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

DEFAULT_CONFIG = "configs/gta5_cityscapes/deeplabv2_stage1.yaml"
# A run is data-bound when the step waits for data longer than this share of the iteration.
DATA_BOUND_SHARE = 0.10
# The pipelines of issue 20, as config settings of each side of --compare.
BEFORE = ("data.prepared_dir=null", "data.target_views.strong_view=worker")
AFTER_STRONG_VIEW = "data.target_views.strong_view=device"
PREPARED_FORMAT = "npy"
GENERATED = {spec.dataset: spec for spec in STANDARD_PIPELINES}


# ------------------------------------------------------------------------ data and config


def _generated_spec(name: str, size_divisor: int) -> PipelineSpec:
    if name not in GENERATED:
        raise ValueError(f"the end-to-end benchmark generates {sorted(GENERATED)} data, not {name!r}; "
                         "choose a config with those datasets")
    spec = GENERATED[name]
    return shrink_spec(spec, size_divisor) if size_divisor > 1 else spec


def generate_data(root: Path, datasets: Sequence[str], images: int, size_divisor: int = 1,
                  seed: int = 0) -> dict[str, Path]:
    """Write ``images`` generated samples of each dataset under ``root/<name>``; returns the roots.

    Data generated earlier with the same settings (``root/<name>/generated.json``) is kept
    as it is, so that a prepared copy written from it stays valid (``--out-dir`` reused).
    """
    atomic_write_json = _atomic().atomic_write_json
    roots = {}
    for k, name in enumerate(dict.fromkeys(datasets)):
        roots[name] = root / name
        marker = roots[name] / "generated.json"
        settings = {"dataset": name, "images": images, "size_divisor": size_divisor, "seed": seed + k}
        if marker.is_file():
            if json.loads(marker.read_text()) == settings:
                continue
            shutil.rmtree(roots[name])  # our own earlier data, of other settings
        write_synthetic(_generated_spec(name, size_divisor), roots[name], images, seed + k)
        atomic_write_json(marker, settings)
    return roots


def _div(size: Sequence[int] | None, divisor: int) -> tuple[int, int] | None:
    return None if size is None else (max(8, int(size[0]) // divisor), max(8, int(size[1]) // divisor))


def benchmark_config(config: str, overrides: Sequence[str], data_root: Path, run_dir: Path, iters: int,
                     device: str, workers: int | None = None, size_divisor: int = 1) -> Any:
    """The config of one benchmark run: ``config`` + ``overrides``, data roots under ``data_root``,
    no validation/TensorBoard/progress bar/periodic checkpoints, ``iters`` iterations in ``run_dir``.
    ``size_divisor`` shrinks the resizes and crops like the generated files."""
    from dataclasses import replace

    from tufl.config import load_config
    from tufl.config.schema import Config

    fixed = [f"experiment.output_dir={run_dir}", f"experiment.device={device}", f"train.iters={iters}",
             "data.val=null", "train.val_every=0", "train.tensorboard=false", "train.progress=false",
             "train.inspect_every=0", "train.auto_resume=false", f"train.checkpoint_every={10 ** 9}"]
    if workers is not None:
        fixed.append(f"data.num_workers={workers}")
    cfg = load_config(Config, config, [*overrides, *fixed])
    sets = {}
    for key in ("source", "target"):
        ds = getattr(cfg.data, key)
        _generated_spec(ds.name, size_divisor)  # a dataset we cannot generate is an error
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
    with :func:`tufl.data.prepared.prepare`; returns the seconds each took."""
    from tufl.data.prepared import prepare
    from tufl.train.builders import open_training_datasets

    seconds = {}
    for domain, base in open_training_datasets(cfg).items():
        start = time.perf_counter()
        prepare(base, cfg.data.prepared_dir, PREPARED_FORMAT, workers, progress=False)
        seconds[domain] = round(time.perf_counter() - start, 2)
    return seconds


# ------------------------------------------------------------------------ one timed run


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
    wrapped = []
    if own_timing is None:
        for name in ("source_loader", "target_loader", "template_loader"):
            if getattr(trainer, name, None) is not None:
                wrapped.append(WaitTimedLoader(getattr(trainer, name)))
                setattr(trainer, name, wrapped[-1])
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

    trainer.train_step = timed_step  # type: ignore[method-assign]
    try:
        trainer.run()
    except _WindowDone:
        pass
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


def run_single(args: argparse.Namespace) -> dict[str, Any]:
    """One benchmark run in this process (the child of :func:`run`); returns its row."""
    from dataclasses import replace

    with tempfile.TemporaryDirectory(prefix="tufl-e2e-run-") as tmp:
        cfg = benchmark_config(args.config, args.overrides, Path(args.data_root), Path(tmp) / "run",
                               args.warmup + args.iters + 1, args.device, args.workers, args.size_divisor)
        if cfg.model.pretrained:
            weights = Path(tmp) / "random_init.pt"
            write_random_weights(cfg, weights)
            cfg = replace(cfg, model=replace(cfg.model, pretrained=str(weights)))
        row = {"pipeline": args.label, "config": args.config, "overrides": list(args.overrides),
               "workers": cfg.data.num_workers, "warmup": args.warmup, "iters": args.iters,
               "mode": cfg.experiment.mode, "arch": cfg.model.arch, "batch_size": cfg.data.batch_size,
               "crop": list(cfg.data.source_aug.crop_size), "size_divisor": args.size_divisor,
               "prepared_dir": _setting(cfg, "data.prepared_dir"),
               "strong_view": _setting(cfg, "data.target_views.strong_view"),
               "fused": _setting(cfg, "optim.fused"), "compile": _setting(cfg, "train.compile"),
               "channels_last": cfg.train.channels_last, "amp": cfg.train.amp,
               "threads": torch.get_num_threads(), "torch": torch.__version__}
        row.update(time_trainer(cfg, args.warmup, args.iters))
    return row


# ------------------------------------------------------------------------ several runs


def _child(args: argparse.Namespace, label: str, overrides: Sequence[str], data_root: Path,
           row_file: Path, src: str | None = None) -> dict[str, Any]:
    """Run one benchmark in a fresh process; ``src``: against the ``tufl`` package in that
    folder (this file is run by path, so only the benchmark harness is today's)."""
    env, config = dict(os.environ), args.config
    if src is None:
        entry = ["-m", "tufl.bench.e2e_bench"]
    else:
        entry = ["-c", "import runpy, sys; sys.argv[0] = sys.argv[1]; del sys.argv[1]; "
                       "runpy.run_path(sys.argv[0], run_name='__main__')", __file__]
        env["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()), *filter(None, [env.get("PYTHONPATH")])])
        config = _config_of_src(args.config, Path(src))
    cmd = [sys.executable, *entry, "--label", label, "--config", config,
           "--data-root", str(data_root), "--row-file", str(row_file), "--device", args.device,
           "--warmup", str(args.warmup), "--iters", str(args.iters), "--size-divisor", str(args.size_divisor),
           *(["--workers", str(args.workers)] if args.workers is not None else []),
           *(f"--set={o}" for o in overrides)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"end-to-end run {label!r} failed (exit {done.returncode}):\n"
                           + (done.stdout[-2000:] + done.stderr[-4000:]))
    return json.loads(row_file.read_text())


def _config_of_src(config: str, src: Path) -> str:
    """The same config file in the tree that holds ``src`` (``<tree>/src``), when it has one:
    older code may not know the keys of today's configs."""
    try:
        relative = Path(config).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return config
    candidate = src.resolve().parent / relative
    return str(candidate) if candidate.is_file() else config


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of end-to-end rows."""
    lines = ["| pipeline | device | workers | it/s | s/iter | data wait s/iter | wait share | bound |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        lines.append(f"| {r['pipeline']} | {r['device_name']} | {r['workers']} | {r['iters_per_second']:.3f} "
                     f"| {r['seconds_per_iter']:.3f} | {r['data_wait_per_iter']:.3f} "
                     f"| {100 * r['data_wait_share']:.0f} % | {r['bound']} |")
    if len(rows) == 2:
        lines.append(f"\nafter/before: {rows[1]['iters_per_second'] / rows[0]['iters_per_second']:.2f}x "
                     "iterations per second")
    return "\n".join(lines)


def describe(row: dict[str, Any]) -> str:
    """One line of the settings a row ran with."""
    crop = "x".join(str(c) for c in row["crop"])
    used = [domain for domain, yes in row["prepared_used"].items() if yes]
    return (f"{row['pipeline']}: {row['config']} ({row['arch']} {row['mode']}, batch {row['batch_size']} per "
            f"domain, crop {crop}), device {row['device']}, workers {row['workers']}, prepared copies used: "
            f"{', '.join(used) or 'none'} (data.prepared_dir {row['prepared_dir']}), strong view on the "
            f"{row['strong_view_used']} ({row['strong_view']}), fused SGD {row['fused_used']} ({row['fused']}), "
            f"compile {row['compile']}, channels_last {row['channels_last']}, amp {row['amp_used']}, "
            f"{row['warmup']} warm-up + {row['iters']} timed iterations, torch {row['torch']}, "
            f"{row['threads']} threads")


def default_warmup(workers: int | None, config: str, overrides: Sequence[str]) -> int:
    """Warm-up that drains the loaders' prefetched batches: 2 per worker, plus 2."""
    if workers is None:
        from tufl.config import load_config
        from tufl.config.schema import Config

        workers = load_config(Config, config, overrides).data.num_workers
    return 2 * workers + 2


def run(args: argparse.Namespace) -> int:
    """``tufl benchmark train --end-to-end`` from parsed arguments (see :func:`add_arguments`)."""
    from tufl.config import load_config
    from tufl.config.schema import Config

    atomic_write_json = _atomic().atomic_write_json
    user_errors = _module("tufl.runtime.errors", "tufl.errors").USER_ERRORS

    if min(args.images, args.iters, args.size_divisor) < 1 or (args.workers is not None and args.workers < 0):
        print("error: --images, --iters and --size-divisor must be >= 1, --workers >= 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tufl-e2e-") as tmp:
        root = Path(args.out_dir) if args.out_dir else Path(tmp)
        try:
            if args.warmup is None:
                args.warmup = default_warmup(args.workers, args.config, args.overrides)
            cfg = load_config(Config, args.config, args.overrides)
            roots = generate_data(root / "data", [cfg.data.source.name, cfg.data.target.name], args.images,
                                  args.size_divisor, args.seed)
            if args.images < cfg.data.batch_size:
                raise ValueError(f"--images {args.images} is below the batch size {cfg.data.batch_size}")
            runs = [("current settings", list(args.overrides))]
            if args.compare:
                prepared_dir = root / "prepared"
                # older code has neither setting: it reads the original files, views on the workers
                before = [*args.overrides, *([] if args.before_src else BEFORE), *args.before_set]
                after = [*args.overrides, f"data.prepared_dir={prepared_dir}", AFTER_STRONG_VIEW, *args.after_set]
                after_cfg = benchmark_config(args.config, after, root / "data", root / "unused", 1, args.device,
                                             args.workers, args.size_divisor)
                seconds = write_prepared_copies(after_cfg, max(1, after_cfg.data.num_workers))
                print(f"prepared copies ({PREPARED_FORMAT}) written in {seconds} s under {prepared_dir}", flush=True)
                old_code = f" (code in {args.before_src})" if args.before_src else ""
                runs = [(f"before: original files, worker views{old_code}", before, args.before_src),
                        ("after: prepared copy, device views", after, None)]
            else:
                runs = [(label, overrides, None) for label, overrides in runs]
            rows = []
            for k, (label, overrides, src) in enumerate(runs):
                rows.append(_child(args, label, overrides, roots[cfg.data.source.name].parent,
                                   root / f"row{k}.json", src))
                print(describe(rows[-1]), flush=True)
        except (*user_errors, ValueError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2 if not isinstance(exc, RuntimeError) else 1
    print(format_rows(rows))
    if args.json:
        atomic_write_json(args.json, rows)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The end-to-end options (``tufl benchmark train --end-to-end ...``); ``--warmup``,
    ``--device``, ``--set`` and ``--json`` are shared with the step benchmark."""
    group = parser.add_argument_group("end-to-end mode (--end-to-end)")
    group.add_argument("--end-to-end", action="store_true",
                       help="whole training iterations of a shipped config with its real loaders over generated "
                            "data at native sizes (iterations/s, data wait, which side bounds the run)")
    group.add_argument("--config", default=DEFAULT_CONFIG, help="config to run (default: %(default)s)")
    group.add_argument("--iters", type=int, default=10, help="timed iterations (default: %(default)s)")
    group.add_argument("--images", type=int, default=16, help="generated images per dataset (default: %(default)s)")
    group.add_argument("--workers", type=int, default=None, help="data.num_workers (default: the config's)")
    group.add_argument("--size-divisor", type=int, default=1, help="shrink files, resizes and crops (smoke runs)")
    group.add_argument("--compare", action="store_true",
                       help="before/after side by side: original files + worker views vs prepared copy + "
                            "device views, each in a fresh process")
    group.add_argument("--before-set", action="append", default=[], metavar="KEY=VALUE",
                       help="with --compare: a setting of the 'before' run only (repeatable)")
    group.add_argument("--after-set", action="append", default=[], metavar="KEY=VALUE",
                       help="with --compare: a setting of the 'after' run only (repeatable)")
    group.add_argument("--before-src", default=None, metavar="DIR",
                       help="with --compare: run 'before' with the tufl package of this src folder (the code before "
                            "issue 20, e.g. from `git archive`); its own copy of --config is used when it has one")
    group.add_argument("--out-dir", default=None, help="keep the generated data and prepared copy here")
    group.add_argument("--seed", type=int, default=0, help="seed of the generated data")


def _child_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tufl.bench.e2e_bench")
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
    row = run_single(args)
    Path(args.row_file).write_text(json.dumps(row))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(_child_main())
