"""Writers of tiny "own data" datasets (folder layout, class definition files) for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

# A 5-class definition file: raw value -> (train id, name). 0 and 255 are ignored.
FIVE_CLASSES = [
    {"value": 10, "train_id": 0, "name": "road", "color": [128, 64, 128]},
    {"value": 11, "train_id": 0, "name": "road"},
    {"value": 20, "train_id": 1, "name": "vehicle", "color": [0, 0, 142]},
    {"value": 30, "train_id": 2, "name": "person", "color": [220, 20, 60]},
    {"value": 40, "train_id": 3, "name": "sky"},
    {"value": 300, "train_id": 4, "name": "building", "color": [70, 70, 70]},
]
FIVE_IGNORE = [0, 255]
# raw value -> expected train id (hand-written, not derived from the code under test)
FIVE_EXPECTED = {10: 0, 11: 0, 20: 1, 30: 2, 40: 3, 300: 4, 0: 255, 255: 255}


def write_class_file(path: Path, classes=FIVE_CLASSES, ignore=FIVE_IGNORE, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"classes": list(classes), "ignore": list(ignore), **extra}, sort_keys=False))
    return path


def write_rgb(path: Path, size: tuple[int, int], seed: int = 0, fmt: str | None = None) -> np.ndarray:
    """A random RGB image of ``size = (width, height)``."""
    image = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format=fmt)
    return image


def write_label(path: Path, label: np.ndarray, kind: str = "grey") -> None:
    """A label map as an 8-bit grey (``grey``), palette (``palette``) or 16-bit grey (``16bit``) PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "16bit":
        image = Image.fromarray(label.astype(np.uint16))
        assert image.mode == "I;16"
    else:
        image = Image.fromarray(label.astype(np.uint8), mode="L")
        if kind == "palette":
            # palette colours unrelated to the indices: the INDEX must be read
            image.putpalette([c for i in range(256) for c in ((7 * i) % 256, 255 - i, (31 * i) % 256)])
            assert image.mode == "P"
    image.save(path)


def label_grid(values: list[int], size: tuple[int, int]) -> np.ndarray:
    """A ``[H, W]`` map cycling through ``values`` pixel by pixel."""
    width, height = size
    flat = np.resize(np.asarray(values, dtype=np.int64), width * height)
    return flat.reshape(height, width)
