"""The options of each ``tufl benchmark WHAT`` (:mod:`tufl.cli.benchmark` parses and runs them)."""

from __future__ import annotations

import argparse

import torch


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def loss_parser(prog: str) -> argparse.ArgumentParser:
    """``tufl benchmark loss``: TUFL's backends against the literal reference."""
    from tufl.bench.loss_bench import DTYPES
    from tufl.losses.backends import BACKEND_NAMES

    parser = argparse.ArgumentParser(prog=prog, description="Time TUFL's backends against the literal reference.")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--classes", type=int, default=19, help="number of classes (default: 19)")
    parser.add_argument("--height", type=int, default=512, help="logit map height (default: 512)")
    parser.add_argument("--width", type=int, default=1024, help="logit map width (default: 1024)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default: 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: 1)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="logit dtype (default: float32)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--backends", nargs="+", choices=BACKEND_NAMES[1:], default=None,
                        help="TUFL backends to time (default: torch fused, and triton on CUDA)")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="also profile the fast implementations and write their operator tables to FILE")
    return parser


def train_parser(prog: str) -> argparse.ArgumentParser:
    """``tufl benchmark train``: the step alone per network and mode, or ``--end-to-end``."""
    from tufl.bench.train_bench import ARCHS, MODES

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2, help="images per domain (default: 2)")
    parser.add_argument("--device", default=_default_device())
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed iterations (default: 1; --end-to-end: 2 per worker + 2, which drains "
                             "the loaders' prefetched batches)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config setting, e.g. loss.tufl.backend=torch (repeatable)")
    parser.add_argument("--json", help="also write the rows to this file")
    _add_end_to_end_arguments(parser)
    return parser


def _add_end_to_end_arguments(parser: argparse.ArgumentParser) -> None:
    """The end-to-end options (``tufl benchmark train --end-to-end ...``); ``--warmup``,
    ``--device``, ``--set`` and ``--json`` are shared with the step benchmark."""
    from tufl.bench.e2e_bench import DEFAULT_CONFIG

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


def inference_parser(prog: str) -> argparse.ArgumentParser:
    """``tufl benchmark inference``: frames per second and latency of the networks."""
    from tufl.bench import inference_bench

    parser = argparse.ArgumentParser(prog=prog, description=inference_bench.__doc__.split("\n", 1)[0])
    parser.add_argument("--device", default=_default_device(), help="default: cuda when available, else cpu")
    parser.add_argument("--height", type=int, default=1024, help="input height (default: 1024)")
    parser.add_argument("--width", type=int, default=2048, help="input width (default: 2048)")
    parser.add_argument("--batch", type=int, default=1, help="images per forward pass (default: 1)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default: 5)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps (default: 20)")
    parser.add_argument("--amp", action="store_true", help="also time mixed precision")
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--builder", default=None, metavar="SPEC",
                        help="'package.module:function' returning {name: model} (default: DeepLabV2 and BiSeNet "
                             "at 19 classes, random weights)")
    return parser


def data_parser(prog: str) -> argparse.ArgumentParser:
    """``tufl benchmark data``: loader images per second of the data pipelines."""
    from tufl.bench.data_bench import VARIANTS

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument(
        "--out-dir", default=None, help="where to write the generated data (default: a temporary folder)"
    )
    parser.add_argument("--images", type=int, default=8, help="generated images per dataset (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per run (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=2, help="batch size (default: %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts (default: 0 2)")
    parser.add_argument("--size-divisor", type=int, default=1, help="shrink all sizes by this factor (smoke runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of generated data and augmentation")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="original: original files, views on the workers; prepared: prepared copy, the target "
                             "strong view's device part timed apart (default: both, side by side)")
    parser.add_argument("--device", default=_default_device(),
                        help="device of the strong view's device part (default: %(default)s)")
    return parser


def faults_parser(prog: str) -> argparse.ArgumentParser:
    """``tufl benchmark faults``: kills, a truncated checkpoint, a full disk, SIGTERM and the probes
    of :mod:`tufl.bench.fault_probes`."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--iters", type=int, default=24, help="iterations of the run (default: 24)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs at random iterations (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill iterations (default: 0)")
    parser.add_argument("--no-probes", action="store_true",
                        help="only the kills and resumes: skip the full filesystem, decompression bomb, concurrent "
                             "runs, poisoned learning rates, rotation kill and pseudo-label probes")
    parser.add_argument("--out", help="working folder (default: a temporary folder, removed afterwards)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    return parser


PARSERS = {"loss": loss_parser, "train": train_parser, "inference": inference_parser, "data": data_parser,
           "faults": faults_parser}
