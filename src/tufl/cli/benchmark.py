"""``tufl benchmark {loss,train,inference,data,faults} [options]``: the speed measurements
and the fault-injection check recorded in ``docs/benchmarks.md`` (run ``tufl benchmark WHAT
--help`` for options).

The options of each benchmark are in :mod:`tufl.cli.benchmark_options`; the measurements
are plain functions of :mod:`tufl.bench`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tufl.cli.benchmark_options import PARSERS

WHAT = ("loss", "train", "inference", "data", "faults")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=WHAT, help="loss: TUFL vs literal reference; train: iteration time and "
                        "memory (--end-to-end: whole iterations with the real loaders, data wait, the bound; "
                        "--compare: before/after issue 20's pipeline); inference: frames/s at 1024x2048; data: loader "
                        "images/s (original files vs prepared copy, per core); faults: kills, "
                        "a truncated checkpoint, a full disk and SIGTERM, resumed to a bit-identical end")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of that benchmark (see WHAT --help)")


def run(args: argparse.Namespace) -> int:
    parser = PARSERS[args.what](f"tufl benchmark {args.what}")
    runner = RUNNERS[args.what]
    return runner(parser.parse_args(args.options), parser)


def _loss(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import torch

    from tufl.bench.loss_bench import DTYPES, run_loss_benchmark
    from tufl.runtime.atomic import atomic_write_text

    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    try:
        result = run_loss_benchmark(device=args.device, num_classes=args.classes, height=args.height,
                                    width=args.width, batch=args.batch, repeats=args.repeats,
                                    dtype=DTYPES[args.dtype], warmup=args.warmup, backends=args.backends,
                                    profile_path=args.profile)
    except ValueError as exc:
        parser.error(str(exc))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    return 0 if all(value for key, value in result.items() if key.endswith("agree")) else 1


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.end_to_end:
        return _end_to_end(args)
    from tufl.bench.train_bench import format_rows, run_step_benchmark

    try:
        rows = run_step_benchmark(args.archs, args.modes, args.height, args.width, args.batch, args.device,
                                  args.amp, 1 if args.warmup is None else args.warmup, args.repeats, args.overrides)
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(format_rows(rows))
    _write_json(args.json, rows)
    return 0


def _end_to_end(args: argparse.Namespace) -> int:
    from tufl.bench.e2e_bench import EndToEndOptions, format_rows, run_end_to_end
    from tufl.runtime.errors import USER_ERRORS

    opts = EndToEndOptions(
        config=args.config, overrides=args.overrides, device=args.device, warmup=args.warmup, iters=args.iters,
        images=args.images, workers=args.workers, size_divisor=args.size_divisor, compare=args.compare,
        before_set=args.before_set, after_set=args.after_set, before_src=args.before_src, out_dir=args.out_dir,
        seed=args.seed)
    try:
        rows = run_end_to_end(opts)
    except RuntimeError as exc:  # a run failed
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (*USER_ERRORS, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_rows(rows))
    _write_json(args.json, rows)
    return 0


def _inference(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from tufl.bench.inference_bench import default_models, format_benchmark, load_builder, run_inference_benchmark

    build_models = default_models
    if args.builder:
        try:
            build_models = load_builder(args.builder)
        except (ImportError, ValueError) as exc:
            parser.error(str(exc))
    rows = run_inference_benchmark(build_models(), args.height, args.width, args.device, args.amp, args.batch,
                                   args.warmup, args.repeats)
    print(format_benchmark(rows))
    _write_json(args.json, {"rows": rows})
    return 0


def _data(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from tufl.bench.data_bench import environment, format_results, format_side_by_side, measure_throughput

    if min(args.images, args.batches, args.batch_size, args.size_divisor) < 1 or min(args.workers) < 0:
        print("throughput: --images, --batches, --batch-size, --size-divisor must be >= 1, --workers >= 0")
        return 2
    with tempfile.TemporaryDirectory(prefix="tufl-throughput-") as tmp:
        work_dir = Path(args.out_dir) if args.out_dir else Path(tmp)
        results = measure_throughput(work_dir, args.images, args.batches, args.batch_size, args.workers,
                                     args.size_divisor, args.seed, variants=args.variants, device=args.device)
    print(environment())
    print(format_results(results))
    if "original" in args.variants and "prepared" in args.variants:
        print()
        print(format_side_by_side(results))
    return 0


def _faults(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from tufl.bench.faults import fault_table, run_faults, summary_line

    if args.out:
        work = Path(args.out)
        work.mkdir(parents=True, exist_ok=True)
        results = run_faults(work, args.iters, args.kills, args.seed, probes_too=not args.no_probes)
    else:
        with tempfile.TemporaryDirectory(prefix="tufl-faults-") as tmp:
            results = run_faults(Path(tmp), args.iters, args.kills, args.seed, probes_too=not args.no_probes)
    print(fault_table(results))
    print(summary_line(results))
    _write_json(args.json, results)
    return 0 if results["passed"] else 1


def _write_json(path: str | None, value: object) -> None:
    """``--json``: ``value`` written to ``path`` (atomically), when given."""
    if path:
        from tufl.runtime.atomic import atomic_write_json

        atomic_write_json(path, value)


RUNNERS: dict[str, Callable[[argparse.Namespace, argparse.ArgumentParser], int]] = {
    "loss": _loss, "train": _train, "inference": _inference, "data": _data, "faults": _faults}
