"""The run summary: what a run is about to do, saved as ``run_info.json`` and printed at start-up.

It lists the numbers failed reproductions usually get wrong (batch sizes per GPU
step, learning rates per group, input convention, resizes and crops, mixed
precision) next to the config, which is saved as ``config.yaml``. When the run
ends (or stops), :func:`record_outcome` adds the last iteration and the bad
samples skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tufl.runtime.atomic import atomic_write_json
from tufl.runtime.typed_config import dump_config
from tufl.train.config import RunConfig
from tufl.evaluation.validation import Validation
from tufl.models.weights import LoadReport
from tufl.train.builders import TrainData


def run_summary(cfg: RunConfig, data: TrainData, optimizer: torch.optim.Optimizer, *, weights_format: str | None,
                input_convention: str, world_size: int, device: torch.device, amp_dtype: torch.dtype | None,
                validation: Validation | None) -> dict[str, Any]:
    """What this run will do (``amp_dtype`` None: mixed precision off)."""
    groups = {g["name"]: g["base_lr"] for g in optimizer.param_groups}
    info = {
        "mode": cfg.experiment.mode,
        "architecture": cfg.model.arch,
        "num_classes": cfg.model.num_classes,
        "weights": cfg.model.pretrained or "random initialisation",
        "weights_format": weights_format,
        "input_convention": input_convention,
        "iterations": cfg.train.iters,
        "batch_per_domain": cfg.data.batch_size,
        "batch_per_domain_per_gpu_step": data.micro_batch,
        "gradient_accumulation": cfg.train.accumulate,
        "world_size": world_size,
        "source": f"{cfg.data.source.title} ({len(data.source)} images, resize {cfg.data.source.resize})",
        "target": f"{cfg.data.target.title} ({len(data.target)} images, resize {cfg.data.target.resize})",
        "source_crop": list(cfg.data.source_aug.crop_size),
        "target_crop": list(cfg.data.target_views.crop_size),
        "lr_backbone": groups.get("backbone"),
        "lr_head": groups.get("head"),
        "unsupervised_loss": cfg.loss.unsupervised,
        "lambda_u": cfg.loss.lambda_u if cfg.experiment.mode != "source_only" else None,
        "lambda_mix": cfg.mix.lambda_mix if cfg.experiment.mode == "stage2" else None,
        "device": str(device),
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype is not None else "off",
        "data_workers": cfg.data.num_workers,
        "prepared_copies": {domain: _prepared_folder(samples) for domain, samples in
                            (("source", data.source), ("target", data.target))},
        "strong_view": getattr(data.target, "strong_view", None),
        "optimizer": f"{type(optimizer).__name__}, "
                     + ("fused" if any(g.get("fused") for g in optimizer.param_groups) else "foreach"),
        "channels_last": cfg.train.channels_last,
        "compile": cfg.train.compile,
        "torch": torch.__version__,
    }
    if validation is not None:
        assert cfg.data.val is not None
        info["validation"] = f"{cfg.data.val.title} ({len(validation.dataset)} images)"
    return info


def _prepared_folder(samples: Any) -> str | None:
    """The prepared copy a training dataset loads from (None: the original files)."""
    copy = getattr(getattr(samples, "base", None), "_prepared", None)
    return None if copy is None else str(copy.folder)


def announce_run(run_dir: Path, cfg: RunConfig, info: dict[str, Any], load_report: LoadReport | None) -> None:
    """Save ``run_info.json`` and ``config.yaml`` in ``run_dir`` and print the summary."""
    atomic_write_json(run_dir / "run_info.json", info)
    dump_config(cfg, run_dir / "config.yaml")
    width = max(map(len, info))
    print(f"[tufl] run directory: {run_dir}")
    for key, value in info.items():
        print(f"[tufl]   {key:<{width}}  {value}")
    if load_report is not None:
        print("[tufl] " + load_report.summary().replace("\n", "\n[tufl] "))


def record_outcome(run_dir: Path, iteration: int, bad_samples: dict[str, int]) -> None:
    """Add where the run stopped and the bad samples it skipped (per domain) to ``run_info.json``."""
    path = Path(run_dir) / "run_info.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):  # not written (the run failed before starting) or unreadable
        return
    info.update(last_iteration=iteration, bad_samples_skipped=bad_samples)
    atomic_write_json(path, info)
