"""Where the host time of one TUFL training call goes on a GPU (diagnostic, CUDA only).

    PYTHONPATH=src python benchmarks/loss_host_phases.py [--compile] [--steps 200]

Same inputs as ``tufl benchmark loss`` (19 classes x 512x1024, batch 2) through
``TUFL(cuda_graphs=True)``. Per step, medians in microseconds: the forward call's
host time, the wait for the device right after it (work still queued: a small wait
means the host was the slower side), the backward call's host time, and the whole
step. Then Python's profiler over the steps, by own time: a call that blocks on the
device shows up there.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import torch

from tufl.losses import TUFL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compile", action="store_true", help="TUFL(compile=True, cuda_graphs=True)")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    device = torch.device("cuda")
    g = torch.Generator().manual_seed(0)
    weak = (3 * torch.randn(2, 19, 512, 1024, generator=g)).to(device).requires_grad_()
    strong = (3 * torch.randn(2, 19, 512, 1024, generator=g)).to(device).requires_grad_()
    loss_fn = TUFL(19, compile=args.compile, cuda_graphs=True).to(device)

    def step(phases: dict[str, list[float]] | None) -> None:
        weak.grad = strong.grad = None
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = loss_fn(weak, strong)
        t1 = time.perf_counter()
        if phases is not None:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        torch.cuda.synchronize()
        t4 = time.perf_counter()
        if phases is not None:
            for name, value in (("forward host", t1 - t0), ("wait after forward", t2 - t1),
                                ("backward host", t3 - t2), ("step", t4 - t0)):
                phases.setdefault(name, []).append(value * 1e6)

    for _ in range(5):
        step(None)
    phases: dict[str, list[float]] = {}
    for _ in range(args.steps):
        step(phases)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, compile={args.compile}")
    for name, values in phases.items():
        print(f"  {name:20s} {statistics.median(values):8.1f} us")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.steps):
        step(None)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(18)


if __name__ == "__main__":
    main()
