"""The cost of the weight check (``tufl.train.step.WeightGuard``): the optimiser step timed with
and without it, alternately in one process, beside the whole stage-one step of the same network.

    PYTHONPATH=src python benchmarks/weight_guard_cost.py --device cuda --archs bisenet deeplabv2

Prints one line per network (recorded in docs/benchmarks.md §7).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tufl.bench.train_bench import _synthetic_batches, _timed_steps, build_training_step
from tufl.train.step import OptimizerStep


def _median_step(update: OptimizerStep, finite: torch.Tensor, device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        update(finite)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def measure(arch: str, device: torch.device, batch: int, height: int, width: int, repeats: int) -> str:
    step = build_training_step(arch, "stage1", device, device.type == "cuda")
    params = list(step.model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    finite = torch.tensor(True, device=device)
    best: dict[bool, float] = {}
    for guard in (False, True, False, True):  # alternately, the best of two rounds each
        update = OptimizerStep(step.optimizer, step.scaler, params, None, check_weights=guard)
        best[guard] = min(best.get(guard, float("inf")), _median_step(update, finite, device, repeats))
    source, target = _synthetic_batches(batch, height, width, step.cfg.model.num_classes, device)
    whole = statistics.median(_timed_steps(step, source, target, device, 2, repeats))
    share = (best[True] - best[False]) / whole * 100
    return (f"{arch}: {sum(p.numel() for p in params) / 1e6:.1f} M parameters; optimiser step without / with the "
            f"check {best[False] * 1e3:.1f} / {best[True] * 1e3:.1f} ms; whole stage-one step (batch {batch}, "
            f"{height}x{width}) {whole:.3f} s; cost {share:+.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--archs", nargs="+", default=["bisenet", "deeplabv2"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=[256, 512], metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=12)
    args = parser.parse_args()
    for arch in args.archs:
        print(measure(arch, torch.device(args.device), args.batch, *args.size, args.repeats), flush=True)


if __name__ == "__main__":
    main()
