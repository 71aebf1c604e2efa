"""Prediction images: train ids, class colours, overlays and benchmark label ids.

A prediction is a ``[H, W]`` map of train ids (numpy array or tensor, any integer
dtype; 255 = no prediction). All files are PNGs written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import Tensor

from tufl.data import labels
from tufl.runtime.atomic import atomic_save_png


def as_train_id_map(pred: np.ndarray | Tensor) -> np.ndarray:
    """A ``[H, W]`` uint8 numpy copy of a train-id map (values must be 0..255)."""
    array = pred.detach().cpu().numpy() if isinstance(pred, Tensor) else np.asarray(pred)
    if array.ndim != 2:
        raise ValueError(f"expected a [H, W] train-id map, got shape {array.shape}")
    if array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"train ids must be in 0..255, got {array.min()}..{array.max()}")
        array = array.astype(np.uint8)
    return array


def colorize(pred: np.ndarray | Tensor, num_classes: int, palette: np.ndarray | None = None) -> np.ndarray:
    """``[H, W, 3]`` uint8 colour image (ignore/unknown ids black).

    ``palette`` is a ``(256, 3)`` table (e.g. ``ClassSet.palette()`` of a class
    definition file); default :func:`tufl.data.labels.palette` (Cityscapes colours for
    19/16/13 classes, generated colours for other counts).
    """
    table = labels.palette(num_classes) if palette is None else _checked_palette(palette)
    return table[as_train_id_map(pred)]


def _checked_palette(palette: np.ndarray) -> np.ndarray:
    table = np.asarray(palette, dtype=np.uint8)
    if table.shape != (256, 3):
        raise ValueError(f"palette must be a (256, 3) colour table, got shape {table.shape}")
    return table


def overlay(image: np.ndarray | Tensor, pred: np.ndarray | Tensor, num_classes: int, alpha: float = 0.5,
            palette: np.ndarray | None = None) -> np.ndarray:
    """Blend the colour map over an RGB image: ``(1 - alpha) * image + alpha * colour``.

    ``image`` is ``[H, W, 3]`` or ``[3, H, W]`` uint8. Pixels without a class
    (id >= ``num_classes``, e.g. 255) show the image unchanged. ``palette``: see
    :func:`colorize`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    ids = as_train_id_map(pred)
    rgb = _hwc_image(image, ids.shape)
    colour = colorize(ids, num_classes, palette).astype(np.float32)
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colour
    blended = np.where((ids < num_classes)[..., None], blended, rgb)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def to_label_ids(pred: np.ndarray | Tensor, num_classes: int) -> np.ndarray:
    """Train ids of a 19/16/13-class model -> Cityscapes label ids (ignore -> 0)."""
    return labels.train_id_to_label_id(num_classes)[as_train_id_map(pred)]


def save_train_ids(path: str | os.PathLike[str], pred: np.ndarray | Tensor) -> Path:
    """Greyscale PNG of the train ids."""
    return atomic_save_png(path, as_train_id_map(pred))


def save_color(path: str | os.PathLike[str], pred: np.ndarray | Tensor, num_classes: int,
               palette: np.ndarray | None = None) -> Path:
    """RGB PNG of the prediction in the class colours (see :func:`colorize`)."""
    return atomic_save_png(path, colorize(pred, num_classes, palette))


def save_overlay(
    path: str | os.PathLike[str],
    image: np.ndarray | Tensor,
    pred: np.ndarray | Tensor,
    num_classes: int,
    alpha: float = 0.5,
    palette: np.ndarray | None = None,
) -> Path:
    """RGB PNG of the colour map blended over the image."""
    return atomic_save_png(path, overlay(image, pred, num_classes, alpha, palette))


def save_label_ids(path: str | os.PathLike[str], pred: np.ndarray | Tensor, num_classes: int) -> Path:
    """Greyscale PNG of Cityscapes label ids, the format of the benchmark server."""
    return atomic_save_png(path, to_label_ids(pred, num_classes))


def _hwc_image(image: np.ndarray | Tensor, size: tuple[int, ...]) -> np.ndarray:
    """The image as ``[H, W, 3]`` uint8, ``(H, W)`` being the prediction ``size``."""
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.dtype == np.uint8 and array.shape == (*size, 3):
        return array
    if array.dtype == np.uint8 and array.shape == (3, *size):
        return array.transpose(1, 2, 0)
    raise ValueError(
        f"expected a uint8 RGB image [H, W, 3] or [3, H, W] of the prediction size {tuple(size)}, "
        f"got {array.dtype} {array.shape}"
    )
