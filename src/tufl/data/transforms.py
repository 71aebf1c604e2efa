"""Per-sample augmentations on ``uint8`` numpy images: scale/crop/flip and photometric T.

T itself lives in :mod:`tufl.data.photometric` (one implementation for the workers
and the mixed images); :class:`PhotometricConfig` is re-exported here.

All randomness comes from the ``numpy.random.Generator`` passed in, so a sample
depends only on its key, never on the worker that builds it. Sizes are
``(width, height)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from tufl.runtime.checks import range_problems, size_problems
from tufl.data.io import Interpolation, Size
from tufl.data.labels import IGNORE_INDEX
from tufl.data.photometric import PhotometricConfig, PhotometricParams, apply_photometric, sample_photometric

_PIL_INTERPOLATION = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def _source_jitter() -> PhotometricConfig:
    return PhotometricConfig(
        jitter_p=0.5, brightness=(0.8, 1.2), contrast=(0.8, 1.2), saturation=(0.8, 1.2), sharpness=(1.0, 1.0),
        shadow_p=0.0, noise_p=0.0, blur_p=0.0, equalize_p=0.0,
    )


@dataclass(frozen=True)
class SourceAugConfig:
    """Augmentation of a labelled source sample: random scale, crop (padded), flip, jitter."""

    # Crop (width, height), sides 1..16384 pixels; padded with ignore where the scaled image is smaller.
    crop_size: tuple[int, int] = (512, 512)
    # Random rescaling factor range before cropping, within [0.001, 100].
    scale_range: tuple[float, float] = (1.0, 1.0)
    # Random horizontal flip (p = 0.5).
    hflip: bool = True
    # Apply photometric jitter to source images.
    photometric: bool = False
    # Parameters of that jitter (photometric T; by default only colour jitter, p 0.5).
    photometric_params: PhotometricConfig = field(default_factory=_source_jitter)

    def problems(self) -> list[str]:
        out = size_problems("crop_size", self.crop_size)
        out += range_problems("scale_range", self.scale_range, 1e-3, 100.0)
        out += [f"photometric_params.{p}" for p in self.photometric_params.problems()]
        return out


def random_scale_crop(
    image: np.ndarray,
    label: np.ndarray | None,
    crop_size: Size,
    scale_range: tuple[float, float],
    rng: np.random.Generator,
    interpolation: Interpolation = "bilinear",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scale by ``s ~ U(scale_range)``, then take a random ``crop_size`` window.

    Where the scaled image is smaller than the crop, the window is padded on the
    right/bottom with 0 (image) and 255 (label). Only the cropped region is
    resampled (Pillow's ``box`` resize), which equals resizing the whole image and
    cropping.
    """
    height, width = image.shape[:2]
    crop_w, crop_h = crop_size
    scale = float(rng.uniform(scale_range[0], scale_range[1]))
    scaled_w = max(1, round(width * scale))
    scaled_h = max(1, round(height * scale))
    x0 = int(rng.integers(0, max(scaled_w - crop_w, 0) + 1))
    y0 = int(rng.integers(0, max(scaled_h - crop_h, 0) + 1))
    region_w, region_h = min(crop_w, scaled_w), min(crop_h, scaled_h)
    fx, fy = width / scaled_w, height / scaled_h
    box = (x0 * fx, y0 * fy, (x0 + region_w) * fx, (y0 + region_h) * fy)
    region = Image.fromarray(image).resize((region_w, region_h), _PIL_INTERPOLATION[interpolation], box=box)
    out_image = np.zeros((crop_h, crop_w, 3), dtype=np.uint8)
    out_image[:region_h, :region_w] = np.asarray(region)
    out_label = None
    if label is not None:
        region = Image.fromarray(label).resize((region_w, region_h), Image.NEAREST, box=box)
        out_label = np.full((crop_h, crop_w), IGNORE_INDEX, dtype=np.uint8)
        out_label[:region_h, :region_w] = np.asarray(region)
    return out_image, out_label


def random_hflip(
    image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator, p: float = 0.5
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mirror image and label left-right with probability ``p``."""
    if rng.random() >= p:
        return image, label
    return np.ascontiguousarray(image[:, ::-1]), None if label is None else np.ascontiguousarray(label[:, ::-1])


def draw_photometric(cfg: PhotometricConfig, rng: np.random.Generator) -> PhotometricParams:
    """The parameters of T for one sample (a batch of one, CPU tensors):
    :func:`sample_photometric` with a CPU generator seeded from ``rng`` (one draw)."""
    generator = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    return sample_photometric(cfg, 1, generator, "cpu")


def photometric(image: np.ndarray, cfg: PhotometricConfig, rng: np.random.Generator) -> np.ndarray:
    """Apply T to an ``uint8`` ``[H, W, 3]`` RGB image with parameters drawn from ``rng``
    (:func:`draw_photometric`)."""
    out = apply_photometric(image_to_tensor(image)[None], draw_photometric(cfg, rng), cfg)[0]
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())


def augment_source(
    image: np.ndarray,
    label: np.ndarray,
    cfg: SourceAugConfig,
    rng: np.random.Generator,
    interpolation: Interpolation = "bilinear",
) -> tuple[np.ndarray, np.ndarray]:
    """Source sample: random scale, random crop (padded), horizontal flip, optional jitter."""
    image, out_label = random_scale_crop(image, label, cfg.crop_size, cfg.scale_range, rng, interpolation)
    if cfg.hflip:
        image, out_label = random_hflip(image, out_label, rng)
    if cfg.photometric:
        image = photometric(image, cfg.photometric_params, rng)
    assert out_label is not None
    return image, out_label


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8`` ``[H, W, 3]`` numpy image -> ``uint8`` ``[3, H, W]`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
