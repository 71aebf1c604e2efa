"""How a run sets up its process and network: determinism, seeds, devices, DDP, compile."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tufl.runtime.distributed import DistContext
from tufl.runtime.errors import ConfigError


def seed_process(seed: int, deterministic: bool, device: torch.device) -> None:
    """Seed torch and choose deterministic algorithms (``train.deterministic``) or cuDNN's
    autotuner (CUDA)."""
    if deterministic:
        # cuBLAS is deterministic only with this workspace setting (read when it starts).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(seed)


def place_model(model: nn.Module, train: Any, ctx: DistContext) -> tuple[nn.Module, DistributedDataParallel | None, Any]:
    """``model`` on the run's device (SyncBatchNorm, channels_last as ``train`` says), its DDP
    wrapper under torch.distributed, and the training forward: compiled when asked (the DDP
    wrapper inside). Checkpoints, validation and inference use the plain model."""
    device = ctx.device
    if train.sync_bn and ctx.enabled and device.type != "cuda":
        raise ConfigError(["train.sync_bn: SyncBatchNorm needs CUDA devices; turn it off for CPU training"])
    if ctx.enabled and train.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if train.channels_last:
        model.to(memory_format=torch.channels_last)
    ddp = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
           if ctx.enabled else None)
    forward = ddp if ddp is not None else model
    if train.compile:
        forward = torch.compile(forward)
    return model, ddp, forward
