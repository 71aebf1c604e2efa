"""Writers of tiny datasets in the exact on-disk format of each dataset, for tests.

Each writer returns what it wrote (paths, images and *raw* label arrays) so tests
can compare loaded data with independent expectations. The 16-bit SYNTHIA label
encoder is written here with ``zlib`` and ``struct`` only, independent of OpenCV.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CITYSCAPES_IDS = tuple(range(34))
SYNTHIA_IDS = tuple(range(23))
# Cityscapes label ids of the 13 Cross-City classes, plus values the files may hold
# for unannotated pixels.
CROSSCITY_VALUES = (7, 8, 11, 19, 20, 21, 23, 24, 25, 26, 28, 32, 33, 0, 255)


@dataclass
class Written:
    """What a fixture writer put on disk for one split, in sample order."""

    names: list[str] = field(default_factory=list)
    image_paths: list[Path] = field(default_factory=list)
    label_paths: list[Path | None] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray | None] = field(default_factory=list)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png16_rgb(path: Path, array: np.ndarray) -> None:
    """Write an ``uint16`` ``[H, W, 3]`` array as a 16-bit RGB PNG (channel 0 = R = first)."""
    if array.dtype != np.uint16 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError("write_png16_rgb needs an uint16 [H, W, 3] array")
    height, width, _ = array.shape
    big_endian = array.astype(">u2")
    rows = b"".join(b"\x00" + big_endian[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png + _png_chunk(b"IEND", b""))


def write_rgb_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, mode="RGB").save(path)


def write_index_png(path: Path, label: np.ndarray, palette: bool = False) -> None:
    """Write an ``uint8`` map as a grey ``L`` PNG, or as a palette ``P`` PNG (indices = values)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label.astype(np.uint8), mode="L")
    if palette:
        image.putpalette([c for i in range(256) for c in (i, (97 * i) % 256, 255 - i)])
        assert image.mode == "P"
    image.save(path)


def random_image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def random_label(rng: np.random.Generator, size: tuple[int, int], values: tuple[int, ...]) -> np.ndarray:
    return rng.choice(np.asarray(values, dtype=np.uint8), (size[1], size[0]))


def write_gta5(
    root: Path, n: int = 4, size: tuple[int, int] = (64, 32), seed: int = 0, mismatched: tuple[int, ...] = (1,)
) -> Written:
    """GTA5 layout; labels are palette PNGs of Cityscapes ids.

    The images of the samples in ``mismatched`` are half the label size (as a few
    real GTA5 images differ in size from their labels).
    """
    rng = np.random.default_rng(seed)
    out = Written()
    for k in range(n):
        name = f"{k + 1:05d}.png"
        image_size = (size[0] // 2, size[1] // 2) if k in mismatched else size
        image = random_image(rng, image_size)
        label = random_label(rng, size, CITYSCAPES_IDS)
        write_rgb_png(root / "images" / name, image)
        write_index_png(root / "labels" / name, label, palette=True)
        out.names.append(name)
        out.image_paths.append(root / "images" / name)
        out.label_paths.append(root / "labels" / name)
        out.images.append(image)
        out.labels.append(label)
    return out


def write_synthia(root: Path, n: int = 3, size: tuple[int, int] = (48, 24), seed: int = 0) -> Written:
    """SYNTHIA-RAND-CITYSCAPES layout; labels are 16-bit RGB PNGs: R = class id, G = instance
    ids above 255 (to prove a full 16-bit read), B = random 16-bit values."""
    rng = np.random.default_rng(seed)
    out = Written()
    for k in range(n):
        name = f"{k:07d}.png"
        image = random_image(rng, size)
        label = random_label(rng, size, SYNTHIA_IDS).astype(np.uint16)
        instance = rng.integers(256, 4000, label.shape, dtype=np.uint16)
        other = rng.integers(0, 65536, label.shape, dtype=np.uint16)
        write_rgb_png(root / "RGB" / name, image)
        write_png16_rgb(root / "GT" / "LABELS" / name, np.stack([label, instance, other], axis=2))
        out.names.append(name)
        out.image_paths.append(root / "RGB" / name)
        out.label_paths.append(root / "GT" / "LABELS" / name)
        out.images.append(image)
        out.labels.append(label)
    return out


def write_cityscapes(
    root: Path,
    splits: tuple[str, ...] = ("train", "val"),
    cities: tuple[str, ...] = ("aachen", "bochum"),
    n_per_city: int = 2,
    size: tuple[int, int] = (64, 32),
    seed: int = 0,
    labelled_splits: tuple[str, ...] | None = None,
) -> dict[str, Written]:
    """Cityscapes layout with nested city folders; ``labelIds`` PNGs for ``labelled_splits``
    (default: every split). Samples are in sorted order (as the dataset scans them)."""
    rng = np.random.default_rng(seed)
    labelled = splits if labelled_splits is None else labelled_splits
    result = {}
    for split in splits:
        out = Written()
        for city in sorted(cities):
            for k in range(n_per_city):
                stem = f"{city}_{k:06d}_000019"
                name = f"{city}/{stem}_leftImg8bit.png"
                image = random_image(rng, size)
                image_path = root / "leftImg8bit" / split / name
                write_rgb_png(image_path, image)
                label = label_path = None
                if split in labelled:
                    label = random_label(rng, size, CITYSCAPES_IDS)
                    label_path = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
                    write_index_png(label_path, label)
                out.names.append(name)
                out.image_paths.append(image_path)
                out.label_paths.append(label_path)
                out.images.append(image)
                out.labels.append(label)
        result[split] = out
    return result


def write_crosscity(
    root: Path,
    cities: tuple[str, ...] = ("Rome",),
    n_train: int = 3,
    n_test: int = 2,
    size: tuple[int, int] = (64, 32),
    seed: int = 0,
) -> dict[str, dict[str, Written]]:
    """NTHU Cross-City layout: ``{City}/Images/{Train,Test}`` and ``{City}/Labels/Test/*_eval.png``
    (grey PNGs of Cityscapes label ids). Returns ``{city: {"train": ..., "test": ...}}``."""
    rng = np.random.default_rng(seed)
    result: dict[str, dict[str, Written]] = {}
    for city in cities:
        result[city] = {}
        for part, count in (("train", n_train), ("test", n_test)):
            out = Written()
            for k in range(count):
                stem = f"pano_{k:05d}_0_0"
                image = random_image(rng, size)
                image_path = root / city / "Images" / part.capitalize() / f"{stem}.png"
                write_rgb_png(image_path, image)
                label = label_path = None
                if part == "test":
                    label = random_label(rng, size, CROSSCITY_VALUES)
                    label_path = root / city / "Labels" / "Test" / f"{stem}_eval.png"
                    write_index_png(label_path, label)
                out.names.append(f"{stem}.png")
                out.image_paths.append(image_path)
                out.label_paths.append(label_path)
                out.images.append(image)
                out.labels.append(label)
            result[city][part] = out
    return result
