"""``tufl train --config FILE [--set k=v ...] [--resume [auto|force]]``.

Exit status: 0 finished; 1 stopped by an error of the run (non-finite losses, too
many bad samples, a checkpoint that could not be written); 2 bad input (config,
data, weights); 3 stopped by a signal (SIGTERM, SIGUSR1) after writing a
checkpoint: run the same command with ``--resume auto`` to continue.
"""

from __future__ import annotations

import argparse
import sys

from tufl.config.command import add_config_arguments, load_run_config
from tufl.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--resume", nargs="?", const="auto", choices=("auto", "force"), default=None,
        help="auto (the default of a bare --resume): continue the run in experiment.output_dir from its "
             "last usable checkpoint, start fresh when it holds none, refuse a checkpoint of another config; "
             "force: continue even with a different config (the differing keys are printed)")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_run_config(args)
        from tufl.train.bad_samples import TooManyBadSamples
        from tufl.train.engine import NonFiniteLossError, train
        from tufl.train.preemption import Preempted, report_preempted
        from tufl.train.run_state import CheckpointWriteError

        try:
            train(cfg, resume=args.resume)
        except Preempted as stop:
            return report_preempted(stop)
        except (NonFiniteLossError, TooManyBadSamples, CheckpointWriteError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output that cannot be written (full disk, permissions): the message names it
        print(f"error: {exc.strerror if exc.strerror and exc.filename is None else exc}", file=sys.stderr)
        return 1
    return 0
