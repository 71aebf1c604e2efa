"""Prediction images: train ids, class colours, overlays, benchmark label ids and the
legend of the colours.

A prediction is a ``[H, W]`` map of train ids (numpy array or tensor, any integer
dtype; 255 = no prediction). Colours come from a ``(256, 3)`` palette: a model's own
(:meth:`~tufl.data.class_set.ModelClasses.palette`) or the Cityscapes colours of its class
names (:func:`class_palette`). All files are PNGs written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from tufl.data import labels
from tufl.data.class_set import ModelClasses
from tufl.runtime.atomic import atomic_save_png

PaletteName = Literal["model", "cityscapes"]
PALETTES: tuple[PaletteName, ...] = ("model", "cityscapes")


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


def cityscapes_set_size(classes: ModelClasses) -> int | None:
    """19, 16 or 13 when ``classes`` are that Cityscapes class set (same names, same order),
    else None: only those models have Cityscapes label ids."""
    for count in labels.SUPPORTED_NUM_CLASSES:
        if classes.names == labels.class_names(count):
            return count
    return None


def class_palette(classes: ModelClasses, name: PaletteName = "model") -> np.ndarray:
    """``(256, 3)`` uint8 colour table of a model's classes: ``"model"``, the colours stored
    with them; ``"cityscapes"``, the Cityscapes colour of each class name (``ValueError``
    naming the classes that have none)."""
    if name == "model":
        return classes.palette()
    if name != "cityscapes":
        raise ValueError(f"unknown palette {name!r}; expected one of {', '.join(PALETTES)}")
    reference = ModelClasses.cityscapes(19)
    colour_of = dict(zip(reference.names, reference.colours, strict=True))
    unknown = [n for n in classes.names if n not in colour_of]
    if unknown:
        raise ValueError(f"the Cityscapes palette has no colour for {', '.join(unknown)} "
                         f"(classes of {classes.origin or 'the model'}); use the model's palette")
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: classes.num_classes] = [colour_of[n] for n in classes.names]
    return table


def legend_image(names: Sequence[str], palette: np.ndarray, font_size: int = 16) -> np.ndarray:
    """``[H, W, 3]`` uint8 legend: one row per class, its colour swatch (outlined in grey)
    then ``"<train id>  <name>"`` in black on white; ``palette[i]`` is class ``i``'s colour."""
    table = _checked_palette(palette)
    font = ImageFont.load_default(size=font_size)
    texts = [f"{train_id}  {name}" for train_id, name in enumerate(names)]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [measure.textbbox((0, 0), text, font=font) for text in texts]
    pad, gap, swatch = 8, 10, font_size + 8
    row = swatch + 6
    width = pad + swatch + gap + max(right for _, _, right, _ in boxes) + pad
    image = Image.new("RGB", (width, 2 * pad + row * len(texts) - 6), "white")
    draw = ImageDraw.Draw(image)
    for k, (text, (_, top, _, bottom)) in enumerate(zip(texts, boxes, strict=True)):
        y = pad + k * row
        draw.rectangle((pad, y, pad + swatch - 1, y + swatch - 1), fill=tuple(int(c) for c in table[k]),
                       outline=(128, 128, 128))
        draw.text((pad + swatch + gap, y + (swatch - top - bottom) // 2), text, fill="black", font=font)
    return np.asarray(image)


def save_legend(path: str | os.PathLike[str], names: Sequence[str], palette: np.ndarray) -> Path:
    """PNG of :func:`legend_image`: which colour is which class."""
    return atomic_save_png(path, legend_image(names, palette))


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
