"""Training-iteration time and peak memory of each network and mode (the step alone);
``--end-to-end``: whole iterations with the real loaders (:mod:`tufl.bench.e2e_bench`).

Each (network, mode) runs in a fresh process (so the CPU peak resident memory is
its own) on random images of the given crop size: a full optimiser step of the
real objective (supervised CE; + TUFL on warped weak/strong views; + cross-domain
mixing with a frozen pseudo-labeller). Reported: median seconds per iteration after
warm-up, and peak memory (CUDA: max allocated; CPU: peak RSS of the process).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

MODES = ("source_only", "stage1", "stage2")
ARCHS = ("deeplabv2", "bisenet")


def _synthetic_batches(batch: int, height: int, width: int, num_classes: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    images = lambda: torch.randint(0, 256, (batch, 3, height, width), generator=g, dtype=torch.uint8)  # noqa: E731
    labels = torch.randint(0, num_classes, (batch, height, width), generator=g)
    # smooth blocks so that ClassMix has several classes to choose from
    labels = torch.nn.functional.interpolate(labels[:, None].float(), scale_factor=1 / 32, mode="nearest")
    labels = torch.nn.functional.interpolate(labels, size=(height, width), mode="nearest")[:, 0].long()
    theta = torch.tensor([[1.0, 0.1, 0.0], [-0.1, 1.0, 0.0]]).expand(batch, 2, 3).contiguous()
    source = {"image": images().to(device), "label": labels.to(device)}
    target = {"weak": images().to(device), "strong": images().to(device), "theta": theta.to(device)}
    return source, target


def time_training_step(arch: str, mode: str, height: int, width: int, batch: int, device: str,
                       amp: bool, warmup: int, repeats: int, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Median seconds per optimiser step and peak memory for one configuration.

    ``overrides`` are ``key=value`` config settings (as ``--set``), e.g.
    ``loss.tufl.backend=torch``; the losses and the mixing are built from that config,
    and ``optim.fused``, ``train.channels_last`` and ``train.compile`` (where the schema
    has it) apply as in training.
    """
    from types import SimpleNamespace

    from tufl.config import experiment_from_dict
    from tufl.models.build import build_model
    from tufl.objective import BuildContext, build_objective
    from tufl.objective.pseudo_labels import frozen_labeller
    from tufl.runtime.typed_config import apply_overrides
    from tufl.train.engine import amp_settings, step_generator
    from tufl.train.optim import build_optimizer

    dev = torch.device(device)
    tree = {"model": {"arch": arch, "freeze_bn": "backbone" if arch == "deeplabv2" else "none"},
            "mix": {"p_longtail": 0.0}}
    cfg = experiment_from_dict(apply_overrides(tree, overrides, {}))
    # the mode set after validation: the networks here are random, where a stage-two run starts from a checkpoint
    cfg = replace(cfg, experiment=replace(cfg.experiment, mode=mode))
    model = build_model(cfg.model).model.to(dev).train()
    n = cfg.model.num_classes
    data = SimpleNamespace(source=None, class_index=None)  # no long-tail pasting: no source index
    objective = build_objective(BuildContext(cfg, model, data, None, dev), frozen_labeller(cfg, None, dev)).to(dev)
    channels_last = cfg.train.channels_last
    if channels_last:
        model.to(memory_format=torch.channels_last)
    compiled = bool(getattr(cfg.train, "compile", False))
    forward = torch.compile(model) if compiled else model
    optimizer = build_optimizer(model, cfg.optim)
    use_amp, dtype = amp_settings(dev, amp)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and dtype == torch.float16)
    source, target = _synthetic_batches(batch, height, width, n, dev)
    if channels_last:  # as the trainer hands them over
        for batch_dict in (source, target):
            for key, value in batch_dict.items():
                if value.dim() == 4 and value.shape[1] == 3:
                    batch_dict[key] = value.contiguous(memory_format=torch.channels_last)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for step in range(warmup + repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=dtype, enabled=use_amp):
            out = objective(forward, source, target, step_generator(0, step, 0, 0))
        scaler.scale(out.loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(dev) / 2**20
        memory = "cuda max allocated"
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        memory = "process peak RSS"
    return {"arch": arch, "mode": mode, "crop": [height, width], "batch_per_domain": batch, "device": str(dev),
            "overrides": list(overrides), "channels_last": channels_last, "compile": compiled,
            "fused": all(bool(g.get("fused")) for g in optimizer.param_groups),
            "amp": str(dtype).removeprefix("torch.") if use_amp else "off", "seconds_per_iter": statistics.median(times),
            "peak_memory_mb": round(peak_mb, 1), "memory": memory, "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["network    mode         crop       batch  amp   s/iter   peak MB   settings",
             "---------  -----------  ---------  -----  ----  -------  --------  --------"]
    for r in rows:
        lines.append(f"{r['arch']:<9}  {r['mode']:<11}  {r['crop'][0]}x{r['crop'][1]:<5}  {r['batch_per_domain']:>5}  "
                     f"{r['amp']:<4}  {r['seconds_per_iter']:7.3f}  {r['peak_memory_mb']:8.0f}  "
                     f"{' '.join(r['overrides']) or '-'}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2, help="images per domain (default: 2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed iterations (default: 1; --end-to-end: 2 per worker + 2, which drains "
                             "the loaders' prefetched batches)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config setting, e.g. loss.tufl.backend=torch (repeatable)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--single", nargs=2, metavar=("ARCH", "MODE"), help=argparse.SUPPRESS)
    from tufl.bench import e2e_bench

    e2e_bench.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.end_to_end:
        from tufl.bench import e2e_bench

        return e2e_bench.run(args)
    if args.warmup is None:
        args.warmup = 1
    common = [args.height, args.width, args.batch, args.device, args.amp, args.warmup, args.repeats]
    if args.single:
        print(json.dumps(time_training_step(*args.single, *common, overrides=args.overrides)))
        return 0
    rows = []
    for arch in args.archs:
        for mode in args.modes:
            cmd = [sys.executable, "-m", "tufl.bench.train_bench", "--single", arch, mode,
                   "--height", str(args.height), "--width", str(args.width), "--batch", str(args.batch),
                   "--device", args.device, "--warmup", str(args.warmup), "--repeats", str(args.repeats),
                   *(["--amp"] if args.amp else []), *(f"--set={o}" for o in args.overrides)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
    print(format_rows(rows))
    if args.json:
        from tufl.runtime.atomic import atomic_write_json

        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tufl.bench.train_bench")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
