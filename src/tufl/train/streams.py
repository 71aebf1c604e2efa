"""The data streams of a training run: one loader per stream at its position, and batches moved
to the training device."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tufl.data.loader import InfiniteLoader, KeyBatchesFactory, KeyedBatches
from tufl.runtime.distributed import DistContext
from tufl.train.builders import TrainData
from tufl.train.config import RunConfig


def open_streams(cfg: RunConfig, data: TrainData, ctx: DistContext, positions: dict[str, int], needs_target: bool
                 ) -> tuple[InfiniteLoader, InfiniteLoader | None, InfiniteLoader | None]:
    """The loaders of the source, target (when the objective reads it) and template (dual_soft
    mixing) streams, continuing at ``positions`` (batches already consumed)."""

    def loader(dataset: Any, stream: int, start: int, workers: int | None = None,
               keys: KeyBatchesFactory = KeyedBatches) -> InfiniteLoader:
        return InfiniteLoader(dataset, data.micro_batch, cfg.experiment.seed + stream, ctx.rank, ctx.world_size,
                              cfg.data.num_workers if workers is None else workers, start_batch=start,
                              pin_memory=ctx.device.type == "cuda", key_batches=keys)

    rare = data.rare_classes  # data.rare_class_sampling: class-first source draws
    source = loader(data.source, 0, positions["source"], keys=rare.key_batches if rare is not None else KeyedBatches)
    target = loader(data.target, 1, positions["target"]) if needs_target else None
    # dual_soft: a third source stream, the templates (no workers: one small batch a step)
    template = loader(data.source, 2, positions["template"], workers=0) if data.needs_template else None
    return source, target, template


def to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    """``batch`` with its tensors on ``device`` (images channels-last when asked), without waiting."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.dim() == 4 and value.shape[1] == 3:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out
