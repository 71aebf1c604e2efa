"""End-to-end training iterations: what a user waits for in a whole run.

``tufl benchmark train --end-to-end`` writes generated data at the datasets' native
sizes (the generators of ``tufl benchmark data``: GTA5 1914x1052, SYNTHIA 1280x760,
Cityscapes 2048x1024), loads a shipped config, points its data roots at the generated
files, turns validation, TensorBoard and periodic checkpoints off, and runs the real
:class:`tufl.train.engine.Trainer` with the configured loader workers for ``warmup +
iters`` iterations in a temporary folder (fresh process per run). Measured over the
timed iterations: seconds per iteration (the device is synchronised at both ends of
the window), and the time the step spent waiting in ``next(loader)`` for data; the run
is "data"-bound when that wait is above :data:`~tufl.bench.e2e_run.DATA_BOUND_SHARE` of
the iteration.

``--compare`` runs, side by side, the pipeline before issue 20 (original files, strong
view built on the workers) and after it (a prepared copy written first, strong view on
the training device); ``--before-set``/``--after-set`` add settings to one side only,
and ``--before-src DIR`` runs the "before" side with the code of another checkout.

This module is the parent: data, the runs to make, their processes, the table. Each
run is :mod:`tufl.bench.e2e_run`, a fresh process; with ``--before-src`` that file is run
by path against the older package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tufl.bench import e2e_run
from tufl.bench.data_bench import STANDARD_PIPELINES, PipelineSpec, shrink, write_synthetic
from tufl.bench.e2e_run import PREPARED_FORMAT, benchmark_config, check_generated, write_prepared_copies
from tufl.bench.tables import markdown_table
from tufl.runtime.atomic import atomic_write_json

DEFAULT_CONFIG = "configs/gta5_cityscapes/deeplabv2_stage1.yaml"
# The pipelines of issue 20, as config settings of each side of --compare.
BEFORE = ("data.prepared_dir=null", "data.target_views.strong_view=worker")
AFTER_STRONG_VIEW = "data.target_views.strong_view=device"
GENERATED = {spec.dataset: spec for spec in STANDARD_PIPELINES}


@dataclass(frozen=True)
class EndToEndOptions:
    """What to run (the options of ``tufl benchmark train --end-to-end``).

    ``warmup`` None: :func:`default_warmup`; ``workers`` None: the config's
    ``data.num_workers``; ``out_dir`` None: a temporary folder for the generated data
    and the prepared copy.
    """

    config: str = DEFAULT_CONFIG
    overrides: Sequence[str] = ()
    device: str = "cpu"
    warmup: int | None = None
    iters: int = 10
    images: int = 16
    workers: int | None = None
    size_divisor: int = 1
    compare: bool = False
    before_set: Sequence[str] = ()
    after_set: Sequence[str] = ()
    before_src: str | None = None
    out_dir: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class PlannedRun:
    """One run of the benchmark: its label, settings, and the src folder of its code (None: this one)."""

    label: str
    overrides: list[str]
    src: str | None = None


# ------------------------------------------------------------------------ data


def _generated_spec(name: str, size_divisor: int) -> PipelineSpec:
    check_generated(name)
    spec = GENERATED[name]
    return shrink(spec, size_divisor) if size_divisor > 1 else spec


def generate_data(root: Path, datasets: Sequence[str], images: int, size_divisor: int = 1,
                  seed: int = 0) -> dict[str, Path]:
    """Write ``images`` generated samples of each dataset under ``root/<name>``; returns the roots.

    Data generated earlier with the same settings (``root/<name>/generated.json``) is kept
    as it is, so that a prepared copy written from it stays valid (``--out-dir`` reused).
    """
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


# ------------------------------------------------------------------------ runs in child processes


def _config_of_src(config: str, src: Path) -> str:
    """The same config file in the tree that holds ``src`` (``<tree>/src``), when it has one:
    older code may not know the keys of today's configs."""
    try:
        relative = Path(config).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return config
    candidate = src.resolve().parent / relative
    return str(candidate) if candidate.is_file() else config


def launch_run(opts: EndToEndOptions, warmup: int, run: PlannedRun, data_root: Path,
               row_file: Path) -> dict[str, Any]:
    """Run one benchmark (:mod:`tufl.bench.e2e_run`) in a fresh process; ``run.src``: against
    the ``tufl`` package in that folder (the run's file is run by path, so only it is today's)."""
    env, config = dict(os.environ), opts.config
    if run.src is None:
        entry = ["-m", "tufl.bench.e2e_run"]
    else:
        entry = ["-c", "import runpy, sys; sys.argv[0] = sys.argv[1]; del sys.argv[1]; "
                       "runpy.run_path(sys.argv[0], run_name='__main__')", e2e_run.__file__]
        env["PYTHONPATH"] = os.pathsep.join([str(Path(run.src).resolve()), *filter(None, [env.get("PYTHONPATH")])])
        config = _config_of_src(opts.config, Path(run.src))
    cmd = [sys.executable, *entry, "--label", run.label, "--config", config,
           "--data-root", str(data_root), "--row-file", str(row_file), "--device", opts.device,
           "--warmup", str(warmup), "--iters", str(opts.iters), "--size-divisor", str(opts.size_divisor),
           *(["--workers", str(opts.workers)] if opts.workers is not None else []),
           *(f"--set={o}" for o in run.overrides)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"end-to-end run {run.label!r} failed (exit {done.returncode}):\n"
                           + (done.stdout[-2000:] + done.stderr[-4000:]))
    return json.loads(row_file.read_text())


def plan_runs(opts: EndToEndOptions, root: Path, say: Callable[[str], None]) -> list[PlannedRun]:
    """The runs to make: the current settings, or with ``opts.compare`` before and after
    (the prepared copies of "after" are written here first, under ``root/prepared``)."""
    if not opts.compare:
        return [PlannedRun("current settings", list(opts.overrides))]
    prepared_dir = root / "prepared"
    # older code has neither setting: it reads the original files, views on the workers
    before = [*opts.overrides, *([] if opts.before_src else BEFORE), *opts.before_set]
    after = [*opts.overrides, f"data.prepared_dir={prepared_dir}", AFTER_STRONG_VIEW, *opts.after_set]
    after_cfg = benchmark_config(opts.config, after, root / "data", root / "unused", 1, opts.device,
                                 opts.workers, opts.size_divisor)
    seconds = write_prepared_copies(after_cfg, max(1, after_cfg.data.num_workers))
    say(f"prepared copies ({PREPARED_FORMAT}) written in {seconds} s under {prepared_dir}")
    old_code = f" (code in {opts.before_src})" if opts.before_src else ""
    return [PlannedRun(f"before: original files, worker views{old_code}", before, opts.before_src),
            PlannedRun("after: prepared copy, device views", after)]


def default_warmup(workers: int | None, config: str, overrides: Sequence[str]) -> int:
    """Warm-up that drains the loaders' prefetched batches: 2 per worker, plus 2."""
    if workers is None:
        workers = e2e_run.load_run_config(config, overrides).data.num_workers
    return 2 * workers + 2


def run_end_to_end(opts: EndToEndOptions, say: Callable[[str], None] = partial(print, flush=True)
                   ) -> list[dict[str, Any]]:
    """Generate the data, make the runs (:func:`plan_runs`) one after the other, each in a
    fresh process, and return their rows; ``say`` gets each run's settings as it ends.

    Raises ValueError for bad options or a config whose data the benchmark cannot
    generate, RuntimeError when a run fails.
    """
    if min(opts.images, opts.iters, opts.size_divisor) < 1 or (opts.workers is not None and opts.workers < 0):
        raise ValueError("--images, --iters and --size-divisor must be >= 1, --workers >= 0")
    with tempfile.TemporaryDirectory(prefix="tufl-e2e-") as tmp:
        root = Path(opts.out_dir) if opts.out_dir else Path(tmp)
        warmup = opts.warmup
        if warmup is None:
            warmup = default_warmup(opts.workers, opts.config, opts.overrides)
        cfg = e2e_run.load_run_config(opts.config, opts.overrides)
        roots = generate_data(root / "data", [cfg.data.source.name, cfg.data.target.name], opts.images,
                              opts.size_divisor, opts.seed)
        if opts.images < cfg.data.batch_size:
            raise ValueError(f"--images {opts.images} is below the batch size {cfg.data.batch_size}")
        rows = []
        for k, run in enumerate(plan_runs(opts, root, say)):
            rows.append(launch_run(opts, warmup, run, roots[cfg.data.source.name].parent, root / f"row{k}.json"))
            say(describe(rows[-1]))
    return rows


# ------------------------------------------------------------------------ the table


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of end-to-end rows (with two rows, the "after" over "before" ratio under it)."""
    table = markdown_table(
        ["pipeline", "device", "workers", "it/s", "s/iter", "data wait s/iter", "wait share", "bound"],
        ([r["pipeline"], r["device_name"], r["workers"], f"{r['iters_per_second']:.3f}",
          f"{r['seconds_per_iter']:.3f}", f"{r['data_wait_per_iter']:.3f}",
          f"{100 * r['data_wait_share']:.0f} %", r["bound"]] for r in rows),
        right_aligned={"workers", "it/s", "s/iter", "data wait s/iter", "wait share"})
    if len(rows) == 2:
        table += (f"\n\nafter/before: {rows[1]['iters_per_second'] / rows[0]['iters_per_second']:.2f}x "
                  "iterations per second")
    return table


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
