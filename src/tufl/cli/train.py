"""``tufl train --config FILE [--set k=v ...] [--resume [auto|force]] [--seeds S [S ...]]``.

Exit status: 0 finished; 1 stopped by an error of the run (non-finite losses or
weights, too many bad samples, an output that could not be written: the message names
it); 2 bad input (config, data, weights) or a run folder another live process is
training in (the message names it); 3 stopped by a signal (SIGTERM, SIGUSR1) after
writing a checkpoint: run the same command with ``--resume auto`` to continue.

``--seeds 0 1 2`` trains the config once per seed, one after the other, each in
``<run_dir>/seed_<s>``, then writes the mean ± sample standard deviation of the final
mIoU and per-class IoU to ``<run_dir>/seeds.json`` and ``seeds.md``
(:mod:`tufl.train.multi_seed`). Its status is the worst of the runs'; a run stopped by
a signal (3) or by bad input (2) ends the job there, and ``--resume auto`` continues it
without rerunning the finished seeds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from tufl.cli.arguments import add_config_arguments, load_run_config
from tufl.runtime.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--resume", nargs="?", const="auto", choices=("auto", "force"), default=None,
        help="auto (the default of a bare --resume): continue the run in experiment.output_dir from its "
             "last usable checkpoint, start fresh when it holds none, refuse a checkpoint of another config; "
             "force: continue even with a different config (the differing keys are printed)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, metavar="SEED",
        help="train the config once per seed (experiment.seed = SEED), one after the other, each in "
             "<run_dir>/seed_<SEED>, then write the mean ± sample standard deviation (n - 1) of the final "
             "validation mIoU and per-class IoU to <run_dir>/seeds.json and seeds.md; with --resume the "
             "finished seeds are not rerun. Exit status: the worst of the runs'")


def train_status(start: Callable[[], object]) -> int:
    """Run ``start`` (one training run) and map how it ended to the command's exit status."""
    from tufl.train.bad_samples import TooManyBadSamples
    from tufl.train.engine import NonFiniteLossError
    from tufl.runtime.stop_signals import Preempted, report_preempted
    from tufl.train.run_state import CheckpointWriteError, NonFiniteWeightsError

    try:
        try:
            start()
        except Preempted as stop:
            return report_preempted(stop)
        except (NonFiniteLossError, NonFiniteWeightsError, TooManyBadSamples, CheckpointWriteError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output that cannot be written (full disk, permissions): the message names it
        print(f"error: {exc.strerror if exc.strerror and exc.filename is None else exc}", file=sys.stderr)
        return 1
    return 0


def run_seeds(cfg, args: argparse.Namespace) -> int:  # noqa: ANN001 - cfg: tufl.config.schema.Config
    """``--seeds``: every run shares one process group and one stop-signal handler."""
    from tufl.runtime.distributed import init_distributed, shutdown
    from tufl.train.engine import Trainer
    from tufl.train.multi_seed import train_seeds
    from tufl.runtime.stop_signals import StopSignals
    from tufl.train.run_state import resume_mode

    resume = resume_mode(args.resume, cfg.train.auto_resume)
    ctx = init_distributed(cfg.experiment.device)
    try:
        with StopSignals(cfg.train.stop_signals, ctx) as stop:
            def train_one(seed_cfg) -> int:  # noqa: ANN001
                return train_status(lambda: Trainer(seed_cfg, resume=resume, ctx=ctx, stop=stop).run())

            return train_seeds(cfg, args.seeds, resume, train_one, stop.stop_requested, ctx.is_main)
    finally:
        shutdown(ctx)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_run_config(args)
        if args.seeds is not None:
            return run_seeds(cfg, args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.strerror if exc.strerror and exc.filename is None else exc}", file=sys.stderr)
        return 1

    def start() -> None:
        from tufl.train.engine import train

        train(cfg, resume=args.resume)

    return train_status(start)
