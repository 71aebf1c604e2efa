"""Reading images and label maps, resizing them, and writing files atomically.

Every reader raises :class:`BadFileError` naming the file and what is wrong with it
(missing, unreadable or corrupt, unexpected image mode or bit depth, too many pixels),
so a bad sample in a large dataset is found in one look.

Every image is checked against a pixel limit from its header before it is decoded
(:class:`ImageTooLargeError`): a file declaring 100000 x 100000 pixels is refused
without allocating them. The limit is each reader's ``max_pixels``; left out, the one
of the innermost :func:`pixel_limit` block (a dataset sets its ``data.max_image_pixels``
around its label-reading hooks), else :data:`DEFAULT_MAX_IMAGE_PIXELS`. Pillow's own
process-wide ``MAX_IMAGE_PIXELS`` check is not what decides: it is off while a header is
read (under a lock), and if it fires later it gives the same error.

SYNTHIA labels are 16-bit 3-channel PNGs. Pillow reduces such files to 8 bits, so
they are read with OpenCV, an optional extra (``pip install 'tufl[synthia]'``)
imported only when such a file is read. 16-bit colour *images* are refused by name
(Pillow would silently keep only their high bytes).
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import ModuleType
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from tufl.runtime.errors import BadFileError, DataError, LayoutError  # noqa: F401 - the readers' errors

Size = tuple[int, int]
"""An image size as ``(width, height)``."""

Interpolation = Literal["bilinear", "bicubic"]

DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
"""The pixel limit of a read that names none (the default of ``data.max_image_pixels``)."""

_PIL_INTERPOLATION = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
_RGB_CONVERTIBLE = ("RGB", "RGBA", "L", "P")
_INDEX_MODES = ("P", "L")
_LIMIT: ContextVar[int] = ContextVar("tufl_max_image_pixels", default=DEFAULT_MAX_IMAGE_PIXELS)
_PILLOW_CHECK = threading.Lock()  # guards the moment Pillow's global check is off
if hasattr(os, "register_at_fork"):  # a fork (loader workers) waits out that moment: consistent in the child
    os.register_at_fork(before=_PILLOW_CHECK.acquire, after_in_parent=_PILLOW_CHECK.release,
                        after_in_child=_PILLOW_CHECK.release)
_BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)


class ImageTooLargeError(BadFileError):
    """An image whose header declares more pixels than the limit: refused before decoding."""


@contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Readers called in this block without ``max_pixels`` refuse images over ``max_pixels``."""
    token = _LIMIT.set(int(max_pixels))
    try:
        yield
    finally:
        _LIMIT.reset(token)


def _limit(max_pixels: int | None) -> int:
    return _LIMIT.get() if max_pixels is None else int(max_pixels)


def _too_large(path: str | os.PathLike[str], size: Size, max_pixels: int) -> ImageTooLargeError:
    width, height = size
    return ImageTooLargeError(
        path, f"image is {width} x {height} = {width * height} pixels, over data.max_image_pixels ({max_pixels}); "
              "not decoded (a decompression bomb? raise data.max_image_pixels if the image is genuine)")


def _open_header(path: str | os.PathLike[str], max_pixels: int | None,
                 data: bytes | bytearray | None = None) -> Image.Image:
    """Open an image (its header only: the file ``path``, or its bytes ``data``) and check its
    size against the limit; not decoded."""
    limit = _limit(max_pixels)
    if data is None and not os.path.isfile(path):
        raise BadFileError(path, "file not found")
    try:
        with _PILLOW_CHECK:  # Pillow's process-wide check off for this header only: ours follows
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(path if data is None else io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except UnidentifiedImageError:
        raise BadFileError(path, "not a readable image (unknown or corrupt format)") from None
    except _BOMB as exc:  # only if another thread turned Pillow's check back on meanwhile
        raise ImageTooLargeError(path, f"refused by Pillow's decompression-bomb check ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadFileError(path, f"corrupt image header ({exc})") from None
    width, height = image.size
    if width * height > limit:
        image.close()
        raise _too_large(path, image.size, limit)
    return image


def _decode(path: str | os.PathLike[str], image: Image.Image) -> Image.Image:
    """Decode an image opened by :func:`_open_header`, turning failures into BadFileError."""
    try:
        image.load()
    except _BOMB as exc:  # Pillow's own check, in formats that repeat it (GIF frames, MPO)
        image.close()
        raise ImageTooLargeError(path, f"image is {image.size[0]} x {image.size[1]} pixels, refused by "
                                       f"Pillow's decompression-bomb check ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        image.close()
        raise BadFileError(path, f"corrupt or truncated image ({exc})") from None
    return image


def open_image(path: str | os.PathLike[str], max_pixels: int | None = None,
               data: bytes | bytearray | None = None) -> Image.Image:
    """Open and fully decode an image with Pillow (the file ``path``, or ``data``, its bytes
    already read), its size checked from the header first.

    Raises :class:`BadFileError` naming ``path`` (:class:`ImageTooLargeError` over ``max_pixels``).
    """
    return _decode(path, _open_header(path, max_pixels, data))


_open_loaded = open_image  # its earlier private name


def image_size(path: str | os.PathLike[str], max_pixels: int | None = None) -> Size:
    """``(width, height)`` of an image, read from its header only (and checked against the limit)."""
    with _open_header(path, max_pixels) as image:
        return image.size


def _is_16_bit(image: Image.Image) -> bool:
    """Whether the header declares 16 bits per sample (Pillow names them ``;16`` raw modes)."""
    for tile in image.tile:
        args = tile[3] if len(tile) > 3 else None
        raw = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
        if isinstance(raw, str) and ";16" in raw:
            return True
    return False


def read_rgb(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """An RGB image as ``uint8`` ``[H, W, 3]`` (grey, palette and RGBA files are converted).

    Images over ``max_pixels`` (default: see the module docstring) are refused from their
    header, before decoding; so are 16-bit colour images (:class:`BadFileError` naming the file).
    """
    image = _open_header(path, max_pixels)
    if image.mode not in _RGB_CONVERTIBLE or _is_16_bit(image):
        kind = "a 16-bit colour image" if image.mode in _RGB_CONVERTIBLE else f"image mode {image.mode!r}"
        image.close()
        raise BadFileError(path, f"{kind} is not an 8-bit colour or grey image (convert it to 8 bits per "
                                 "channel)")
    image = _decode(path, image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def read_index_png(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """A single-channel 8-bit label map (palette ``P`` or grey ``L``) as ``uint8`` ``[H, W]``.

    For palette images the pixel *indices* are returned, not the palette colours.
    """
    image = open_image(path, max_pixels)
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


def read_png_unchanged(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """A PNG with its bit depth and channels kept, channels in *file* order (RGB/RGBA).

    Uses OpenCV (optional extra ``tufl[synthia]``); 16-bit files come back as ``uint16``.
    The size is checked from the header (Pillow) before OpenCV decodes the file.
    """
    cv2 = _import_cv2()
    try:
        image_size(path, max_pixels)  # the pixel limit, from the header
    except BadFileError as exc:
        if isinstance(exc, ImageTooLargeError) or not os.path.isfile(path):
            raise
        raise BadFileError(path, "not a readable PNG (corrupt, truncated or unknown format)") from None
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


def read_synthia_label(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """SYNTHIA class ids (first channel of a 16-bit colour PNG) as ``uint16`` ``[H, W]``."""
    array = read_png_unchanged(path, max_pixels)
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
