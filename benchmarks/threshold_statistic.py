"""The threshold statistic psi on a GPU: the sort against the radix-selection kernels (CUDA only).

    PYTHONPATH=src python benchmarks/threshold_statistic.py [--replays 200]

Confidences and pseudo-classes of ``softmax(scale * N(0, 1))`` logits, 19 classes x
512x1024, batch 2: scale 3 as in ``tufl benchmark loss`` (spread confidences) and
scale 12 (saturated ones, as from a trained network). Each implementation is
recorded as a CUDA graph, as in ``TUFL(cuda_graphs=True)``, and replayed: the sort
as eager torch operations and through ``torch.compile`` (as with ``compile=True``),
then the selection kernels. Prints microseconds per replay (median of 5 rounds)
and whether every result equals the eager sort's.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from torch import Tensor

from tufl.losses import thresholds
from tufl.losses.focal_compiled import compiled
from tufl.losses.thresholds import order_statistic_psi, sorted_psi


def _recorded(function: Callable[[], Tensor]) -> tuple[torch.cuda.CUDAGraph, Tensor]:
    """``function`` run on a side stream (compilation, autotuning), then recorded."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            function()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        result = function()
    return graph, result


def _microseconds(graph: torch.cuda.CUDAGraph, replays: int) -> float:
    rounds = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
        rounds.append(start.elapsed_time(end) * 1e3 / replays)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replays", type=int, default=200)
    args = parser.parse_args()
    device = torch.device("cuda")
    num_classes = 19
    b, d, min_confidence = 0.8, 8.0, 1 / (num_classes + 1)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; 19 classes x 512x1024, batch 2; "
          f"microseconds per replay")
    for scale in (3.0, 12.0):
        g = torch.Generator().manual_seed(0)
        logits = (scale * torch.randn(2, num_classes, 512, 1024, generator=g)).to(device)
        conf, cls = logits.softmax(dim=1).max(dim=1)
        del logits
        theta = torch.full((num_classes,), 0.8, device=device)
        arguments = (conf, cls, None, theta, b, d, min_confidence)
        variants = {
            "sort": lambda: sorted_psi(*arguments),
            "sort, compiled": lambda: compiled(sorted_psi)(*arguments),
            "selection": lambda: order_statistic_psi(*arguments),  # on CUDA: the kernels
        }
        times, results = {}, {}
        for name, function in variants.items():
            graph, results[name] = _recorded(function)
            times[name] = _microseconds(graph, args.replays)
        agree = all(torch.equal(result, results["sort"]) for result in results.values())
        mean_conf = float(conf.mean())
        print(f"logit scale {scale:g} (mean confidence {mean_conf:.3f}): "
              + ", ".join(f"{name} {value:.1f}" for name, value in times.items())
              + f"; selection vs sort {times['sort'] / times['selection']:.2f}x, "
              f"vs compiled sort {times['sort, compiled'] / times['selection']:.2f}x; agree = {agree}")
    failure = thresholds._SELECTION.failure
    print("selection kernels: " + ("used" if failure is None else f"failed, the sort ran instead ({failure})"))


if __name__ == "__main__":
    main()
