"""Per-sample transforms: scale/crop/pad, flip, photometric T, source augmentation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tufl.data.transforms import (
    PhotometricConfig,
    SourceAugConfig,
    augment_source,
    photometric,
    random_hflip,
    random_scale_crop,
)

OFF = PhotometricConfig(jitter_p=0.0, shadow_p=0.0, equalize_p=0.0, blur_p=0.0, noise_p=0.0)


def _position_label(width: int, height: int) -> np.ndarray:
    """Labels that encode their own position (unique per 2x2 cell for a 32x16 map)."""
    y, x = np.mgrid[0:height, 0:width]
    return ((y // 2) * (width // 2) + x // 2).astype(np.uint8)


def test_crop_smaller_image_is_padded_with_zero_and_ignore():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, (10, 20, 3), dtype=np.uint8)
    label = rng.integers(0, 19, (10, 20), dtype=np.uint8)
    out_image, out_label = random_scale_crop(image, label, (32, 16), (1.0, 1.0), rng)
    assert out_image.shape == (16, 32, 3) and out_label.shape == (16, 32)
    assert np.array_equal(out_image[:10, :20], image) and np.array_equal(out_label[:10, :20], label)
    assert (out_image[10:] == 0).all() and (out_image[:, 20:] == 0).all()
    assert (out_label[10:] == 255).all() and (out_label[:, 20:] == 255).all()


@pytest.mark.parametrize("scale", [1.0, 1.5, 2.0])
def test_scaled_crop_equals_full_resize_then_crop(scale):
    width, height = 32, 16
    label = _position_label(width, height)
    wide = label.astype(int)
    image = np.stack([wide * 2, wide * 5 % 256, 255 - wide], axis=2).astype(np.uint8)
    crop = (12, 10)
    out_image, out_label = random_scale_crop(image, label, crop, (scale, scale), np.random.default_rng(4))
    full_size = (round(width * scale), round(height * scale))
    full_label = np.asarray(Image.fromarray(label).resize(full_size, Image.NEAREST))
    full_image = np.asarray(Image.fromarray(image).resize(full_size, Image.BILINEAR)).astype(int)
    offsets = [
        (x0, y0)
        for y0 in range(full_size[1] - crop[1] + 1)
        for x0 in range(full_size[0] - crop[0] + 1)
        if np.array_equal(full_label[y0 : y0 + crop[1], x0 : x0 + crop[0]], out_label)
    ]
    assert offsets, "the label crop is not a window of the resized label"
    x0, y0 = offsets[0]
    window = full_image[y0 : y0 + crop[1], x0 : x0 + crop[0]]
    assert np.abs(window - out_image.astype(int)).max() <= 1  # box resize == full resize, up to rounding


def test_hflip_mirrors_image_and_label_together():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    label = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint8)
    flipped_image, flipped_label = random_hflip(image, label, np.random.default_rng(0), p=1.0)
    assert np.array_equal(flipped_image, image[:, ::-1]) and np.array_equal(flipped_label, [[2, 1, 0], [5, 4, 3]])
    same_image, same_label = random_hflip(image, label, np.random.default_rng(0), p=0.0)
    assert same_image is image and same_label is label


def test_photometric_off_is_identity_and_brightness_scales_pixels():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 200, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(photometric(image, OFF, rng), image)
    bright = PhotometricConfig(jitter_p=1.0, brightness=0.4, contrast=0.0, saturation=0.0, sharpness=0.0,
                               shadow_p=0.0, equalize_p=0.0, blur_p=0.0, noise_p=0.0)
    out = photometric(image, bright, np.random.default_rng(2)).astype(float)
    ratio = out[image > 50] / image[image > 50]
    factor = np.median(ratio)
    assert 0.6 <= factor <= 1.4 and abs(factor - 1) > 1e-3
    assert np.allclose(out, np.clip(image * factor, 0, 255), atol=1.01)


def test_photometric_noise_is_zero_mean_and_blur_smooths():
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    noisy_cfg = PhotometricConfig(jitter_p=0.0, shadow_p=0.0, equalize_p=0.0, blur_p=0.0, noise_p=1.0,
                                  noise_std=(20.0,))
    noisy = photometric(image, noisy_cfg, np.random.default_rng(3)).astype(float)
    assert noisy.std() > 1.0 and abs(noisy.mean() - 128) < 1.0
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)[:, :, None].repeat(3, 2)
    blur_cfg = PhotometricConfig(jitter_p=0.0, shadow_p=0.0, equalize_p=0.0, blur_p=1.0, blur_sigma=(1.5, 2.0),
                                 noise_p=0.0)
    blurred = photometric(checker, blur_cfg, np.random.default_rng(4)).astype(float)
    assert blurred[8:-8, 8:-8].std() < 0.2 * checker.astype(float).std()


def test_augment_source_is_a_function_of_the_generator():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    label = rng.integers(0, 19, (40, 60), dtype=np.uint8)
    cfg = SourceAugConfig(crop_size=(24, 16), scale_range=(0.8, 1.5), photometric=True)
    first = augment_source(image, label, cfg, np.random.default_rng(7))
    second = augment_source(image, label, cfg, np.random.default_rng(7))
    other = augment_source(image, label, cfg, np.random.default_rng(8))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], other[0])
    assert first[0].shape == (16, 24, 3) and first[1].shape == (16, 24) and first[1].dtype == np.uint8


def test_source_config_problems():
    assert SourceAugConfig().problems() == []
    bad = SourceAugConfig(scale_range=(2.0, 1.0), photometric_params=PhotometricConfig(brightness=3.0))
    problems = bad.problems()
    assert problems[0].startswith("scale_range:")
    assert any(p.startswith("photometric_params.brightness:") for p in problems)
