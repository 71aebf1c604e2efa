"""Reading images and label maps, resizing them, and writing files atomically.

Every reader raises :class:`BadFileError` naming the file and what is wrong with it
(missing, unreadable or corrupt, unexpected image mode), so a bad sample in a large
dataset is found in one look.

SYNTHIA labels are 16-bit 3-channel PNGs. Pillow reduces such files to 8 bits, so
they are read with OpenCV, an optional extra (``pip install 'tufl[synthia]'``)
imported only when such a file is read.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from tufl.runtime.errors import BadFileError, DataError, LayoutError  # noqa: F401 - the readers' errors

Size = tuple[int, int]
"""An image size as ``(width, height)``."""

Interpolation = Literal["bilinear", "bicubic"]

_PIL_INTERPOLATION = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
_RGB_CONVERTIBLE = ("RGB", "RGBA", "L", "P")
_INDEX_MODES = ("P", "L")


def _open_loaded(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image with Pillow, turning failures into BadFileError."""
    if not os.path.isfile(path):
        raise BadFileError(path, "file not found")
    try:
        image = Image.open(path)
        image.load()
    except UnidentifiedImageError:
        raise BadFileError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadFileError(path, f"corrupt or truncated image ({exc})") from None
    return image


def image_size(path: str | os.PathLike[str]) -> Size:
    """``(width, height)`` of an image, read from its header only."""
    if not os.path.isfile(path):
        raise BadFileError(path, "file not found")
    try:
        with Image.open(path) as image:
            return image.size
    except UnidentifiedImageError:
        raise BadFileError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadFileError(path, f"corrupt image header ({exc})") from None


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """An RGB image as ``uint8`` ``[H, W, 3]`` (grey, palette and RGBA files are converted)."""
    image = _open_loaded(path)
    if image.mode not in _RGB_CONVERTIBLE:
        raise BadFileError(path, f"image mode {image.mode!r} is not an 8-bit colour or grey image")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def read_index_png(path: str | os.PathLike[str]) -> np.ndarray:
    """A single-channel 8-bit label map (palette ``P`` or grey ``L``) as ``uint8`` ``[H, W]``.

    For palette images the pixel *indices* are returned, not the palette colours.
    """
    image = _open_loaded(path)
    if image.mode not in _INDEX_MODES:
        raise BadFileError(
            path, f"label image mode {image.mode!r}: expected a palette (P) or 8-bit grey (L) PNG"
        )
    return np.asarray(image, dtype=np.uint8)


def _import_cv2() -> ModuleType:
    try:
        import cv2
    except ImportError:
        raise ImportError(
            "reading 16-bit SYNTHIA label PNGs needs OpenCV; install it with "
            "`pip install 'tufl[synthia]'` (or opencv-python-headless)"
        ) from None
    return cv2


def read_png_unchanged(path: str | os.PathLike[str]) -> np.ndarray:
    """A PNG with its bit depth and channels kept, channels in *file* order (RGB/RGBA).

    Uses OpenCV (optional extra ``tufl[synthia]``); 16-bit files come back as ``uint16``.
    """
    cv2 = _import_cv2()
    if not os.path.isfile(path):
        raise BadFileError(path, "file not found")
    array = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise BadFileError(path, "not a readable PNG (corrupt, truncated or unknown format)")
    if array.ndim == 3:
        # OpenCV stores colour as BGR(A): reverse the colour channels to file order.
        order = [2, 1, 0, 3][: array.shape[2]] if array.shape[2] in (3, 4) else None
        if order is None:
            raise BadFileError(path, f"unexpected number of channels {array.shape[2]}")
        array = array[:, :, order]
    return array


def read_synthia_label(path: str | os.PathLike[str]) -> np.ndarray:
    """SYNTHIA class ids (first channel of a 16-bit colour PNG) as ``uint16`` ``[H, W]``."""
    array = read_png_unchanged(path)
    if array.ndim != 3 or array.shape[2] < 3:
        shape = "x".join(str(s) for s in array.shape)
        raise BadFileError(path, f"expected a 3-channel SYNTHIA label PNG, got an array of shape {shape}")
    if array.dtype not in (np.uint8, np.uint16):
        raise BadFileError(path, f"unexpected sample type {array.dtype}")
    return np.ascontiguousarray(array[:, :, 0], dtype=np.uint16)


def resize_image(image: np.ndarray, size: Size, interpolation: Interpolation = "bilinear") -> np.ndarray:
    """Resize an ``uint8`` ``[H, W, 3]`` image to ``size = (width, height)``."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    pil = Image.fromarray(image).resize(tuple(size), _PIL_INTERPOLATION[interpolation])
    return np.asarray(pil)


def resize_label(label: np.ndarray, size: Size) -> np.ndarray:
    """Resize an ``uint8`` ``[H, W]`` label map to ``size = (width, height)``, nearest neighbour."""
    if label.dtype != np.uint8:
        raise TypeError(f"resize_label expects an uint8 label map, got {label.dtype}")
    if (label.shape[1], label.shape[0]) == tuple(size):
        return label
    return np.asarray(Image.fromarray(label).resize(tuple(size), Image.NEAREST))
