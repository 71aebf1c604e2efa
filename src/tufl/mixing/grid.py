"""A PNG grid to inspect mixed batches by eye."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from tufl.runtime.atomic import atomic_write


def _rgb(images: Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` in ``[0, 255]`` -> ``[B, H, W, 3]`` uint8."""
    array = images.detach().float().round().clamp(0, 255).to("cpu").numpy()
    return array.astype(np.uint8).transpose(0, 2, 3, 1)


def save_mix_grid(
    path: str | os.PathLike[str],
    source: Tensor,
    target: Tensor,
    mixed: Tensor,
    mixed_label: Tensor,
    weights: Tensor,
    palette: np.ndarray,
) -> Path:
    """Write a PNG grid: one row per sample, columns source | target | mixed | label | weights.

    Args:
        path: output ``.png`` file; parent folders are created; written atomically.
        source, target, mixed: ``[B, 3, H, W]`` RGB images in ``[0, 255]``.
        mixed_label: ``[B, H, W]`` train ids, coloured with ``palette``.
        weights: ``[B, H, W]`` pixel weights, shown as grey with white = the largest
            of 1 and the batch's maximum weight.
        palette: ``(256, 3)`` uint8 colour table (e.g. ``tufl.data.labels.palette(C)``).
    """
    path = Path(path)
    if source.dim() != 4 or source.shape[1] != 3:
        raise ValueError(f"source must be [B, 3, H, W], got {tuple(source.shape)}")
    batch, _, height, width = source.shape
    for name, tensor in (("target", target), ("mixed", mixed)):
        if tensor.shape != source.shape:
            raise ValueError(f"{name} shape {tuple(tensor.shape)} differs from source {tuple(source.shape)}")
    for name, tensor in (("mixed_label", mixed_label), ("weights", weights)):
        if tuple(tensor.shape) != (batch, height, width):
            raise ValueError(f"{name} must be [{batch}, {height}, {width}], got {tuple(tensor.shape)}")
    palette = np.asarray(palette, dtype=np.uint8)
    if palette.shape != (256, 3):
        raise ValueError(f"palette must be a (256, 3) colour table, got shape {palette.shape}")

    labels = mixed_label.detach().to("cpu").long().clamp(0, 255).numpy()
    weight_map = weights.detach().float().to("cpu").numpy()
    scale = max(1.0, float(weight_map.max())) if weight_map.size else 1.0
    grey = np.clip(weight_map / scale * 255.0, 0, 255).round().astype(np.uint8)
    columns = [
        _rgb(source),
        _rgb(target),
        _rgb(mixed),
        palette[labels],
        np.repeat(grey[..., None], 3, axis=-1),
    ]
    rows = [np.concatenate([column[b] for column in columns], axis=1) for b in range(batch)]
    grid = np.concatenate(rows, axis=0)

    atomic_write(path, lambda handle: Image.fromarray(grid).save(handle, format="PNG"))
    return path
