"""An example of your own data (``tufl demo --own-data-example DIR``), in the layouts
docs/own-data.md walks through, made from the demo's generated scenes::

    DIR/simulator/images/sim_00001.png     labelled simulator images
    DIR/simulator/labels/sim_00001.png     their labels: 8-bit PNGs of the simulator's own
                                           16 raw values (configs/own_data/classes/simulator_6_classes.yaml)
    DIR/dashcam/frames/frame_000001.jpg    unlabelled dashcam frames (JPEG)
    DIR/dashcam/val/images/*.png           a few frames labelled in the same encoding
    DIR/dashcam/val/labels/*.png
    DIR/dashcam/drive.mp4                  the labelled frames as a video (needs the video extra)

The scenes are the demo's (:mod:`tufl.demo.scenes`); only their names, formats and label
encoding change, so that the walk-through exercises exactly what your own folders would.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tufl.data.io import read_index_png, read_rgb
from tufl.demo.scenes import SOURCE_DIR, TARGET_DIR, ensure_demo_data
from tufl.runtime.atomic import atomic_save_png

# Cityscapes label id (the demo scenes' labels) -> the example simulator's raw value; other ids -> 0 (unlabelled).
SIMULATOR_VALUES: dict[int, int] = {
    7: 1, 8: 2, 11: 3, 12: 4, 13: 5, 17: 15, 19: 15, 20: 15, 21: 6, 22: 7, 23: 8, 24: 9, 25: 10,
    26: 11, 27: 12, 28: 13, 31: 13, 32: 14, 33: 14,
}
VIDEO_RATE = 10


@dataclass(frozen=True)
class OwnDataExample:
    """What :func:`write_own_data_example` wrote."""

    root: Path
    simulator_images: int
    frames: int
    labelled_frames: int
    video: Path | None


def simulator_labels(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes label ids ``[H, W]`` -> the simulator's raw values (uint8)."""
    lut = np.zeros(256, dtype=np.uint8)
    for label_id, value in SIMULATOR_VALUES.items():
        lut[label_id] = value
    return lut[label_ids]


def write_own_data_example(root: str | Path, seed: int = 0, size: tuple[int, int] = (256, 128),
                           n_simulator: int = 300, n_frames: int = 300, n_labelled: int = 60,
                           workers: int = 2, video: bool = True) -> OwnDataExample:
    """Write the example under ``root`` (see the module docstring); returns what it wrote.
    ``video``: also write ``dashcam/drive.mp4`` when PyAV (``tufl[video]``) is installed."""
    root = Path(root)
    with tempfile.TemporaryDirectory(prefix="tufl-own-data-") as tmp:
        scenes = ensure_demo_data(Path(tmp), seed, size, n_simulator, n_frames, n_labelled, workers)
        source, target = scenes.root / SOURCE_DIR, scenes.root / TARGET_DIR
        images = sorted((source / "images").glob("*.png"))
        for k, path in enumerate(images, start=1):
            atomic_save_png(root / "simulator" / "images" / f"sim_{k:05d}.png", read_rgb(path))
            label = simulator_labels(read_index_png(source / "labels" / path.name))
            atomic_save_png(root / "simulator" / "labels" / f"sim_{k:05d}.png", label)
        frames = sorted((target / "leftImg8bit" / "train").rglob("*.png"))
        for k, path in enumerate(frames, start=1):
            (root / "dashcam" / "frames").mkdir(parents=True, exist_ok=True)
            Image.fromarray(read_rgb(path)).save(root / "dashcam" / "frames" / f"frame_{k:06d}.jpg", quality=92)
        labelled = sorted((target / "leftImg8bit" / "val").rglob("*.png"))
        val_images = []
        for k, path in enumerate(labelled, start=1):
            label_path = Path(str(path).replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png",
                                                                                  "_gtFine_labelIds.png"))
            val_images.append(read_rgb(path))
            atomic_save_png(root / "dashcam" / "val" / "images" / f"val_{k:04d}.png", val_images[-1])
            atomic_save_png(root / "dashcam" / "val" / "labels" / f"val_{k:04d}.png",
                            simulator_labels(read_index_png(label_path)))
    drive = _write_video(root / "dashcam" / "drive.mp4", val_images) if video else None
    return OwnDataExample(root, len(images), len(frames), len(labelled), drive)


def _write_video(path: Path, frames: list[np.ndarray]) -> Path | None:
    """An H.264 mp4 of ``frames`` at :data:`VIDEO_RATE` frames/s; None without PyAV."""
    from fractions import Fraction

    from tufl.evaluation.video import MissingVideoExtraError, VideoWriter, import_av
    from tufl.runtime.atomic import atomic_path

    try:
        av = import_av()
    except MissingVideoExtraError:
        return None
    with atomic_path(path) as tmp, VideoWriter(av, tmp, Fraction(VIDEO_RATE)) as writer:
        for frame in frames:
            writer.write(frame)
    return path
