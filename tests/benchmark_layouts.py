"""Writers of tiny ACDC, Dark Zurich, BDD100K and Mapillary Vistas trees in their official layouts.

Each writer returns ``{split: [(image path, raw label or None), ...]}`` in the order the
dataset lists its samples. Labels are written exactly as the datasets ship them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fixtures import write_index_png, write_rgb_png

SIZE = (64, 32)  # (width, height)
# Raw Cityscapes label ids used in generated ACDC / Dark Zurich labels (7 road, 26 car,
# 33 bicycle, 0 unlabelled, 9 parking: ignored).
CITYSCAPES_VALUES = (7, 8, 11, 21, 23, 24, 26, 33, 0, 9)


def _image(rng: np.random.Generator, size: tuple[int, int] = SIZE) -> np.ndarray:
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def _label(rng: np.random.Generator, values: tuple[int, ...], size: tuple[int, int] = SIZE) -> np.ndarray:
    return rng.choice(np.asarray(values, dtype=np.uint8), (size[1], size[0]))


def _jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def write_anon_sequence(root: Path, image_dir: str, label_dir: str | None, sequence: str, n: int,
                        rng: np.random.Generator) -> list[tuple[Path, np.ndarray | None]]:
    """``{image_dir}/{seq}/{seq}_frame_{k}_rgb_anon.png`` and, with ``label_dir``, ``..._gt_labelIds.png``."""
    out = []
    for k in range(n):
        stem = f"{sequence}_frame_{k:06d}"
        image_path = root / image_dir / sequence / f"{stem}_rgb_anon.png"
        write_rgb_png(image_path, _image(rng))
        label = None
        if label_dir is not None:
            label = _label(rng, CITYSCAPES_VALUES)
            write_index_png(root / label_dir / sequence / f"{stem}_gt_labelIds.png", label)
            # the other gt files ACDC/Dark Zurich ship next to the label ids (never read)
            write_index_png(root / label_dir / sequence / f"{stem}_gt_labelTrainIds.png", np.zeros_like(label))
        out.append((image_path, label))
    return out


def write_acdc(root: Path, conditions: tuple[str, ...] = ("fog", "night", "rain", "snow"),
               parts: tuple[str, ...] = ("train", "val"), n: int = 1, seed: int = 0) -> dict[str, list]:
    """ACDC: ``rgb_anon/{cond}/{part}/{seq}/..._rgb_anon.png``, ``gt/{cond}/{part}/{seq}/..._gt_labelIds.png``
    (labels for train and val, none for test). Keys ``"{cond}/{part}"``."""
    rng = np.random.default_rng(seed)
    result = {}
    for cond in conditions:
        for part in parts:
            labels = None if part == "test" else f"gt/{cond}/{part}"
            result[f"{cond}/{part}"] = write_anon_sequence(root, f"rgb_anon/{cond}/{part}", labels,
                                                           f"GOPR0{len(cond)}{len(part)}", n, rng)
            # daytime reference images, not part of the split
            write_rgb_png(root / "rgb_anon" / cond / f"{part}_ref" / "GOPR0000" / "x_ref_anon.png", _image(rng))
    return result


def write_dark_zurich(root: Path, n_train: int = 2, n_val: int = 2, seed: int = 0) -> dict[str, list]:
    """Dark Zurich: train night (two sequences) and day (unlabelled), val night GOPR0356 with labels."""
    rng = np.random.default_rng(seed)
    night = write_anon_sequence(root, "rgb_anon/train/night", None, "GOPR0351", n_train, rng)
    night += write_anon_sequence(root, "rgb_anon/train/night", None, "GOPR0355", 1, rng)
    day = write_anon_sequence(root, "rgb_anon/train/day", None, "GOPR0348", 1, rng)
    val = write_anon_sequence(root, "rgb_anon/val/night", "gt/val/night", "GOPR0356", n_val, rng)
    write_rgb_png(root / "rgb_anon" / "val_ref" / "day" / "GOPR0356_ref" / "x_ref_anon.png", _image(rng))
    return {"train/night": night, "train/day": day, "val/night": val}


def write_bdd100k(root: Path, legacy: bool = False, n: int = 2, seed: int = 0,
                  values: tuple[int, ...] = (0, 1, 9, 13, 16, 18, 255)) -> dict[str, list]:
    """BDD100K 10K: JPEG images and grey train-id masks, current layout
    (``images/10k``, ``labels/sem_seg/masks``) or the older ``seg/`` one (``*_train_id.png``)."""
    rng = np.random.default_rng(seed)
    result = {}
    for split in ("train", "val", "test"):
        out = []
        for k in range(n):
            stem = f"{k:08x}-{split[:2]}0c4a1e"
            image = _image(rng, (64, 36))
            if legacy:
                image_path = root / "seg" / "images" / split / f"{stem}.jpg"
                label_path = root / "seg" / "labels" / split / f"{stem}_train_id.png"
                write_rgb_png(root / "seg" / "color_labels" / split / f"{stem}_train_color.png", image)
            else:
                image_path = root / "images" / "10k" / split / f"{stem}.jpg"
                label_path = root / "labels" / "sem_seg" / "masks" / split / f"{stem}.png"
                write_rgb_png(root / "labels" / "sem_seg" / "colormaps" / split / f"{stem}.png", image)
            _jpeg(image_path, image)
            label = None
            if split != "test":
                label = _label(rng, values, (64, 36))
                write_index_png(label_path, label)
            out.append((image_path, label))
        result[split] = out
    return result


def write_mapillary(root: Path, v2_download: bool = False, seed: int = 0,
                    values: tuple[int, ...] = (13, 55, 65, 4, 20, 46, 27, 30)) -> dict[str, list]:
    """Mapillary Vistas v1.2: ``{training,validation}/images/*.jpg`` of mixed sizes and palette PNG
    labels (``labels/`` or, as in the v2.0 download, ``v1.2/labels/``); ``testing/images`` only."""
    rng = np.random.default_rng(seed)
    sizes = [(48, 36), (40, 30), (64, 28)]
    result = {}
    for part in ("training", "validation", "testing"):
        out = []
        for k, size in enumerate(sizes[:2] if part != "validation" else sizes):
            key = f"{part[:3]}{k}_aBcD-xYz"
            image_path = root / part / "images" / f"{key}.jpg"
            _jpeg(image_path, _image(rng, size))
            label = None
            if part != "testing":
                label = _label(rng, values, size)
                label_dir = root / part / ("v1.2/labels" if v2_download else "labels")
                write_index_png(label_dir / f"{key}.png", label, palette=True)
                if v2_download:  # 124-class v2.0 labels next to them, never read
                    write_index_png(root / part / "v2.0" / "labels" / f"{key}.png", label + 60, palette=True)
            out.append((image_path, label))
        result[part] = out
    (root / "config.json").write_text('{"labels": []}')
    return result
