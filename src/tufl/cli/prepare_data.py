"""``tufl prepare-data --config FILE [--set k=v ...]``: write prepared copies of the training data.

The source and target datasets are opened exactly as training opens them (same
resize, class set and sample list), and each is written at its training size to
``data.prepared_dir`` (:mod:`tufl.data.prepared`). Training then loads from the copy
and says so. Rerun it after the data or these settings change: files still valid
are kept.

Exit status: 0 done; 1 some original files were unreadable or had more pixels than
``data.max_image_pixels`` (named; recorded in the copy, so training skips or stops on
them as it would on the originals); 2 bad input, or another process is writing the same
copy (named: its PID and host).
"""

from __future__ import annotations

import argparse
import os
import sys

from tufl.cli.arguments import add_config_arguments, load_run_config
from tufl.runtime.errors import USER_ERRORS

_SHOWN_BAD = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--format", choices=("npy", "png"), default="npy",
                        help="npy: fastest to load (default); png: lossless too, about half the disk, slower")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes decoding and writing samples (default: %(default)s, the CPU count)")
    parser.add_argument("--domains", nargs="+", choices=("source", "target"), default=["source", "target"],
                        help="the training datasets to prepare (default: both)")


def _size(num_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024  # type: ignore[assignment]
    raise AssertionError


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_run_config(args)
        if cfg.data.prepared_dir is None:
            print("error: data.prepared_dir is null (prepared copies are off); set it, e.g. "
                  "--set data.prepared_dir=data/prepared", file=sys.stderr)
            return 2
        if args.workers < 1:
            print("error: --workers must be >= 1", file=sys.stderr)
            return 2
        from tufl.data.prepared import prepare
        from tufl.train.builders import open_training_datasets

        bases = open_training_datasets(cfg)
        bad_total = 0
        for domain in args.domains:
            base = bases[domain]
            base.max_image_pixels = cfg.data.max_image_pixels  # as training reads them
            size = "native size" if base.resize is None else f"{base.resize[0]}x{base.resize[1]}"
            print(f"[tufl] {domain} {base.name}: {len(base)} samples from {base.root} at {size} "
                  f"-> {cfg.data.prepared_dir}", flush=True)
            result = prepare(base, cfg.data.prepared_dir, fmt=args.format, workers=args.workers)
            print(f"[tufl] {domain} {base.name}: prepared copy {result.folder} ({result.samples} samples, "
                  f"{result.format}, {_size(result.total_bytes)}; {result.written} written, {result.reused} kept; "
                  f"verified; {result.seconds:.1f} s)", flush=True)
            for path, problem in result.bad[:_SHOWN_BAD]:
                print(f"[tufl]   unreadable original: {path}: {problem}")
            if len(result.bad) > _SHOWN_BAD:
                print(f"[tufl]   ... and {len(result.bad) - _SHOWN_BAD} more (listed in {result.folder}/manifest.json)")
            if result.bad:
                print(f"[tufl] {domain} {base.name}: {len(result.bad)} of {result.samples} samples have unreadable "
                      "originals (recorded as bad: training skips them with data.skip_bad_files)")
            bad_total += len(result.bad)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # a dataset setting the datasets refuse, a file that cannot be written
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    return 1 if bad_total else 0
