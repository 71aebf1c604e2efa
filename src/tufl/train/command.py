"""``tufl train --config FILE [--set k=v ...] [--resume]``."""

from __future__ import annotations

import argparse
import sys

from tufl.config.command import add_config_arguments, load_run_config
from tufl.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in experiment.output_dir from its last checkpoint")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_run_config(args)
        from tufl.train.engine import NonFiniteLossError, train

        try:
            train(cfg, resume=args.resume)
        except NonFiniteLossError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
