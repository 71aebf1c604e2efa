"""Per-sample augmentations on ``uint8`` numpy images: scale/crop/flip and photometric T.

All randomness comes from the ``numpy.random.Generator`` passed in, so a sample
depends only on its key, never on the worker that builds it. Sizes are
``(width, height)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from tufl.data.config_problems import probability_problems, range_problems, size_problems
from tufl.data.io import Interpolation, Size
from tufl.data.labels import IGNORE_INDEX

_PIL_INTERPOLATION = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


@dataclass
class PhotometricConfig:
    """Photometric transform T: colour jitter, histogram equalisation, blur, noise.

    Each jitter factor is drawn uniformly from ``[1 - s, 1 + s]`` for strength ``s``
    (0 disables that factor); the jitter block runs with probability ``jitter_p``.
    ``noise_std`` is the largest noise standard deviation in 0..255 units.
    """

    # Probability of the colour-jitter block (brightness, contrast, saturation, sharpness).
    jitter_p: float = 0.8
    # Brightness factor drawn from [1 - s, 1 + s] (0 = off).
    brightness: float = 0.4
    # Contrast factor drawn from [1 - s, 1 + s] (0 = off).
    contrast: float = 0.4
    # Saturation factor drawn from [1 - s, 1 + s] (0 = off).
    saturation: float = 0.4
    # Sharpness factor drawn from [1 - s, 1 + s] (0 = off).
    sharpness: float = 0.5
    # Probability of histogram equalisation.
    equalize_p: float = 0.1
    # Probability of a Gaussian blur.
    blur_p: float = 0.5
    # Range of the blur sigma (pixels).
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    # Probability of Gaussian noise.
    noise_p: float = 0.5
    # Largest noise standard deviation (0..255 units).
    noise_std: float = 8.0

    def problems(self) -> list[str]:
        out = probability_problems(self, ("jitter_p", "equalize_p", "blur_p", "noise_p"))
        for name in ("brightness", "contrast", "saturation", "sharpness"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                out.append(f"{name}: jitter strength must be in [0, 1], got {getattr(self, name)}")
        out += range_problems("blur_sigma", self.blur_sigma, 0.0, 50.0)
        if self.noise_std < 0:
            out.append(f"noise_std: must be >= 0, got {self.noise_std}")
        return out


def _source_jitter() -> PhotometricConfig:
    return PhotometricConfig(
        jitter_p=0.5, brightness=0.2, contrast=0.2, saturation=0.2, sharpness=0.0,
        equalize_p=0.0, blur_p=0.0, noise_p=0.0,
    )


@dataclass
class SourceAugConfig:
    """Augmentation of a labelled source sample: random scale, crop (padded), flip, jitter."""

    # Crop (width, height); padded with ignore where the scaled image is smaller.
    crop_size: tuple[int, int] = (512, 512)
    # Random rescaling factor range before cropping.
    scale_range: tuple[float, float] = (1.0, 1.0)
    # Random horizontal flip (p = 0.5).
    hflip: bool = True
    # Apply photometric jitter to source images.
    photometric: bool = False
    # Strengths of that jitter.
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


def photometric(image: np.ndarray, cfg: PhotometricConfig, rng: np.random.Generator) -> np.ndarray:
    """Apply T to an ``uint8`` ``[H, W, 3]`` RGB image (see :class:`PhotometricConfig`)."""
    pil = Image.fromarray(image)
    if rng.random() < cfg.jitter_p:
        enhancers = (
            (ImageEnhance.Brightness, cfg.brightness),
            (ImageEnhance.Contrast, cfg.contrast),
            (ImageEnhance.Color, cfg.saturation),
            (ImageEnhance.Sharpness, cfg.sharpness),
        )
        for enhancer, strength in enhancers:
            if strength > 0:
                pil = enhancer(pil).enhance(float(rng.uniform(1.0 - strength, 1.0 + strength)))
    if rng.random() < cfg.equalize_p:
        pil = ImageOps.equalize(pil)
    if rng.random() < cfg.blur_p:
        pil = pil.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(*cfg.blur_sigma))))
    out = np.asarray(pil)
    if cfg.noise_std > 0 and rng.random() < cfg.noise_p:
        sigma = float(rng.uniform(0.0, cfg.noise_std))
        noise = rng.standard_normal(out.shape, dtype=np.float32) * sigma
        out = np.clip(out.astype(np.float32) + noise, 0, 255).round().astype(np.uint8)
    return out


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
