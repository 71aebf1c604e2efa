"""``tufl benchmark {loss,train,inference,data,faults} [options]``: the speed measurements
and the fault-injection check recorded in ``docs/benchmarks.md`` (run ``tufl benchmark WHAT
--help`` for options)."""

from __future__ import annotations

import argparse
import sys

from torch import nn

WHAT = ("loss", "train", "inference", "data", "faults")


def default_models() -> dict[str, nn.Module]:
    """The two inference networks at 19 classes (random weights: speed only)."""
    from tufl.models.build import ModelConfig, build_model

    return {
        "deeplabv2": build_model(ModelConfig(arch="deeplabv2"), training=False).model,
        "bisenet": build_model(ModelConfig(arch="bisenet"), training=False).model,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=WHAT, help="loss: TUFL vs literal reference; train: iteration time and "
                        "memory (--end-to-end: whole iterations with the real loaders, data wait, the bound; "
                        "--compare: before/after issue 20's pipeline); inference: frames/s at 1024x2048; data: loader "
                        "images/s (original files vs prepared copy, per core); faults: kills, "
                        "a truncated checkpoint, a full disk and SIGTERM, resumed to a bit-identical end")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of that benchmark (see WHAT --help)")


def run(args: argparse.Namespace) -> int:
    prog = f"tufl benchmark {args.what}"
    if args.what == "loss":
        from tufl.bench import loss_bench

        sys.argv[0] = prog
        result = loss_bench.main(args.options)
        return 0 if all(value for key, value in result.items() if key.endswith("agree")) else 1
    if args.what == "inference":
        from tufl.bench import inference_bench

        inference_bench.main(args.options, build_models=default_models, prog=prog)
        return 0
    if args.what == "faults":
        from tufl.bench import faults

        sub = argparse.ArgumentParser(prog=prog)
        faults.add_arguments(sub)
        return faults.run(sub.parse_args(args.options))
    if args.what == "train":
        from tufl.bench import train_bench

        sub = argparse.ArgumentParser(prog=prog)
        train_bench.add_arguments(sub)
        return train_bench.run(sub.parse_args(args.options))
    from tufl.bench import data_bench

    sub = argparse.ArgumentParser(prog=prog)
    data_bench.add_throughput_arguments(sub)
    return data_bench.run_throughput(sub.parse_args(args.options))
