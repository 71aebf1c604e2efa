"""Data-parallel TUFL: every worker ends with the thresholds of the averaged update."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tufl.losses import TUFL

C = 5
WORLD = 2
STEPS = 3
OPTIONS = dict(theta0=0.6, a=0.5, b=0.8, d=2.0)


def _inputs(rank: int, step: int):
    g = torch.Generator().manual_seed(1000 * rank + step)
    z1 = torch.randn(2, C, 6, 6, generator=g) * (2.0 + rank)  # workers see different confidences
    if rank == 0:
        z1[:, C - 1] = -1e4  # class C-1 is predicted on worker 1 only
    z2 = torch.randn(2, C, 6, 6, generator=g)
    valid = torch.rand(2, 6, 6, generator=g) > 0.2
    return z1.requires_grad_(), z2.requires_grad_(), valid


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        loss_fn = TUFL(C, **OPTIONS)
        history = []
        for step in range(STEPS):
            z1, z2, valid = _inputs(rank, step)
            loss_fn(z1, z2, valid).backward()
            history.append(loss_fn.thresholds.clone())
        torch.save(torch.stack(history), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _literal_psi(confs, classes, theta, b, d):
    psi = list(theta)
    for c in range(len(theta)):
        s = [m for m, k in zip(confs, classes) if k == c]
        if s:
            n_c = len(s)
            s = sorted(s + [theta[c]], reverse=True)
            psi[c] = s[math.floor((n_c + 1) * b * theta[c] ** d)]
    return psi


def test_workers_share_the_averaged_threshold_update(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    assert torch.equal(results[0], results[1])

    theta = [float(np.float32(OPTIONS["theta0"]))] * C
    a = OPTIONS["a"]
    for step in range(STEPS):
        psis = []
        for rank in range(WORLD):
            z1, _, valid = _inputs(rank, step)
            conf, cls = torch.softmax(z1.detach(), dim=1).max(dim=1)
            psis.append(_literal_psi([float(v) for v in conf[valid]], [int(v) for v in cls[valid]], theta,
                                     OPTIONS["b"], OPTIONS["d"]))
        mean_psi = [sum(values) / WORLD for values in zip(*psis)]
        theta = [float(np.float32(min(a * t + (1 - a) * p, 0.999))) for t, p in zip(theta, mean_psi)]
        torch.testing.assert_close(results[0][step], torch.tensor(theta), atol=2e-6, rtol=0)
    # The averaging mattered: a single worker's own update would differ.
    assert psis[0] != psis[1]
