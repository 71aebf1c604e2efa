"""Checks of loaded label maps: sizes that may be fitted to their image, values that are train ids.

GTA5 ships a few labels whose size differs from their image; :func:`label_size_tolerated`
bounds the mismatch a dataset resizes (the same aspect ratio, or a few pixels off) so that a
label that cannot belong to its image (a 128x64 label of a 1x1 image) is a bad sample.
:func:`check_train_ids` makes a label value no class has a bad sample naming the file,
never an ``IndexError`` in the loss.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from tufl.data.io import BadFileError, Size
from tufl.data.labels import IGNORE_INDEX

SIZE_SLACK = 4
"""Pixels a tolerated label size may be off, per side (after scaling to the image)."""
MAX_LABEL_SCALE = 4.0
"""The largest factor between a tolerated label's size and its image's, either way."""
_SHOWN = 10


def label_size_tolerated(label: Size, image: Size) -> bool:
    """Whether a label of ``label = (width, height)`` may be resized to its image's ``image``.

    True when each side is at most :data:`SIZE_SLACK` pixels off, or when the label is the
    image scaled by a factor within ``1/MAX_LABEL_SCALE .. MAX_LABEL_SCALE`` (the same aspect
    ratio, each side within :data:`SIZE_SLACK` pixels at the image's scale).
    """
    (lw, lh), (iw, ih) = label, image
    if abs(lw - iw) <= SIZE_SLACK and abs(lh - ih) <= SIZE_SLACK:
        return True
    if min(lw, lh, iw, ih) < 1:
        return False
    scale_x, scale_y = iw / lw, ih / lh
    if not all(1 / MAX_LABEL_SCALE <= s <= MAX_LABEL_SCALE for s in (scale_x, scale_y)):
        return False
    return abs(lh * scale_x - ih) <= SIZE_SLACK and abs(lw * scale_y - iw) <= SIZE_SLACK


def size_text(size: Size) -> str:
    """``"WxH"``."""
    return f"{size[0]}x{size[1]}"


def check_train_ids(label: np.ndarray, num_classes: int, path: str | os.PathLike[str]) -> None:
    """Raise :class:`BadFileError` naming ``path`` when ``label`` holds a value that is neither a
    train id below ``num_classes`` nor the ignore index (vectorised: two counts)."""
    if np.count_nonzero(label >= num_classes) == np.count_nonzero(label == IGNORE_INDEX):
        return
    values = np.unique(label[(label >= num_classes) & (label != IGNORE_INDEX)]).tolist()
    shown = ", ".join(map(str, values[:_SHOWN])) + (", ..." if len(values) > _SHOWN else "")
    raise BadFileError(path, f"label values {shown} are not train ids of {num_classes} classes "
                             f"(0..{num_classes - 1}, {IGNORE_INDEX} ignored)")


def map_raw_label(mapping: Callable[[np.ndarray], np.ndarray], raw: np.ndarray, path: str | os.PathLike[str],
                  dataset: str) -> np.ndarray:
    """``mapping(raw)`` (a look-up of raw label values); a value outside the table is a BadFileError."""
    try:
        return mapping(raw)
    except IndexError:
        raise BadFileError(path, f"label value {int(raw.max())} is outside the {dataset} label table") from None
