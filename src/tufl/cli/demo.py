"""``tufl demo [--out DIR] [--quick] [--set [STAGE:]KEY=VALUE]``: the built-in
synthetic -> realistic benchmark end to end (:mod:`tufl.demo.pipeline`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tufl.demo.pipeline import DEFAULT, QUICK, STAGE_NAMES, run_demo, stage_overrides
from tufl.runtime.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output", help="output folder (default: ./demo_output)")
    parser.add_argument("--data-dir", default=None,
                        help="where the generated scenes are cached (default: <out>/data)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of training (default: 0)")
    parser.add_argument("--quick", action="store_true", help="tiny data and schedule (about a minute; for tests)")
    parser.add_argument("--workers", type=int, default=2, help="processes generating the data (default: 2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="[STAGE:]KEY=VALUE",
                        help="override a value of the demo configs for all three stages, or with a STAGE prefix "
                        "(source_only, stage1, stage2) for that stage only, e.g. stage2:pseudo_labels.source=ema")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    data_dir = Path(args.data_dir) if args.data_dir else out / "data"
    settings = QUICK if args.quick else DEFAULT
    try:
        for stage in STAGE_NAMES:  # a bad stage prefix is reported before anything runs
            stage_overrides(args.overrides, stage)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run_demo(out, data_dir, args.seed, settings, args.workers, args.overrides)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
