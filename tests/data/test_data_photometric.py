"""Photometric transform T: parameter draws, each block against hand values or Pillow, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from tufl.runtime.typed_config import ConfigError, from_dict
from tufl.data.photometric import (
    TEXTURE_SIZE,
    PhotometricConfig,
    PhotometricParams,
    apply_photometric,
    noise_fields,
    photometric_batch,
    sample_photometric,
    shadow_maps,
    shadow_texture,
)
from tufl.data.transforms import photometric

UNIT = (1.0, 1.0)
OFF = dict(jitter_p=0.0, brightness=UNIT, contrast=UNIT, saturation=UNIT, sharpness=UNIT,
           shadow_p=0.0, noise_p=0.0, blur_p=0.0, equalize_p=0.0)


def only(**changes) -> PhotometricConfig:
    """Everything off except ``changes``."""
    return PhotometricConfig(**{**OFF, **changes})


def params_for(cfg: PhotometricConfig, batch: int, seed: int = 0, **values) -> PhotometricParams:
    """Draws of ``cfg`` for ``batch`` samples with some fields replaced by constants."""
    params = sample_photometric(cfg, batch, torch.Generator().manual_seed(seed), "cpu")
    return params._replace(**{k: torch.full((batch,), v) for k, v in values.items()})


def to_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def to_image(batch: torch.Tensor) -> np.ndarray:
    return batch[0].permute(1, 2, 0).numpy()


def test_default_draws_cover_their_ranges_and_frequencies():
    n = 20_000
    p = sample_photometric(PhotometricConfig(), n, torch.Generator().manual_seed(0), "cpu")
    tol = 4 * math.sqrt(0.25 / n)  # 4 sigma of a frequency
    for values, (lo, hi) in ((p.brightness, (0.4, 1.2)), (p.contrast, (0.4, 2.0)), (p.saturation, (0.5, 2.0)),
                             (p.sharpness, (0.4, 2.0)), (p.intensity, (0.01, 0.3)), (p.blur_sigma, (0.0, 1.2))):
        assert lo <= values.min() < lo + 0.01 * (hi - lo) and hi - 0.01 * (hi - lo) < values.max() <= hi
        assert abs(values.mean() - (lo + hi) / 2) < 0.01 * (hi - lo)
    assert p.jitter.all() and p.shadow.all() and p.noise.all() and p.blur.all()
    assert abs(p.equalize.float().mean() - 0.3) < tol
    assert set(p.noise_std.unique().tolist()) == {3.0, 4.0}
    assert abs((p.noise_std == 3.0).float().mean() - 0.5) < tol
    assert set(p.quarter_turns.unique().tolist()) == {1, 2, 3}
    for turns in (1, 2, 3):
        assert abs((p.quarter_turns == turns).float().mean() - 1 / 3) < tol
    for flag in (p.flip_lr, p.flip_tb, p.invert):
        assert abs(flag.float().mean() - 0.5) < tol
    for start, size in ((p.crop_x, p.crop_w), (p.crop_y, p.crop_h)):
        assert size.min() == int(0.02 * TEXTURE_SIZE) and size.max() == int(0.5 * TEXTURE_SIZE) - 1
        assert start.min() == 0 and (start + size).max() == TEXTURE_SIZE
    assert not torch.equal(p.crop_w, p.crop_h)  # width and height drawn independently


@pytest.mark.parametrize(("value", "factor", "want"),
                         [(100, 0.5, 50), (99, 0.75, 74), (200, 1.2, 240), (250, 1.5, 255)])
def test_brightness_on_a_constant_image_truncates_like_pillow(value, factor, want):
    image = np.full((6, 5, 3), value, dtype=np.uint8)
    cfg = only(jitter_p=1.0, brightness=(0.0, 2.0))
    out = apply_photometric(to_batch(image), params_for(cfg, 1, brightness=factor), cfg)
    assert (out == want).all()


@pytest.mark.parametrize(("factor", "red", "blue"),
                         [(0.5, (154, 26, 26), (26, 26, 154)), (2.0, (255, 0, 0), (0, 0, 255))])
def test_contrast_blends_with_the_rounded_mean_grey(factor, red, blue):
    # L(255, 0, 0) = 76 and L(0, 0, 255) = 29: mean 52.5 -> grey int(52.5 + 0.5) = 53.
    # factor 0.5: 53 + 0.5 * (255 - 53) = 154, 53 + 0.5 * (0 - 53) = 26.5 -> 26.
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:, :2, 0] = 255
    image[:, 2:, 2] = 255
    cfg = only(jitter_p=1.0, contrast=(0.0, 2.0))
    out = to_image(apply_photometric(to_batch(image), params_for(cfg, 1, contrast=factor), cfg))
    assert (out[:, :2] == red).all() and (out[:, 2:] == blue).all()


@pytest.mark.parametrize("name,enhancer", [("brightness", ImageEnhance.Brightness), ("contrast", ImageEnhance.Contrast),
                                           ("saturation", ImageEnhance.Color), ("sharpness", ImageEnhance.Sharpness)])
@pytest.mark.parametrize("factor", [0.4, 0.8125, 1.375, 2.0])
def test_each_jitter_factor_matches_pillow(name, enhancer, factor):
    image = np.random.default_rng(3).integers(0, 256, (23, 31, 3), dtype=np.uint8)
    cfg = only(jitter_p=1.0, **{name: (0.0, 2.0)})
    out = to_image(apply_photometric(to_batch(image), params_for(cfg, 1, **{name: factor}), cfg))
    want = np.asarray(enhancer(Image.fromarray(image)).enhance(factor))
    diff = np.abs(out.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


@pytest.mark.parametrize("kind", ["random", "narrow", "two_values", "constant"])
def test_equalize_equals_pillow(kind):
    rng = np.random.default_rng(4)
    image = {
        "random": rng.integers(0, 256, (40, 30, 3)),
        "narrow": rng.integers(100, 110, (40, 30, 3)),
        "two_values": rng.choice([20, 180], (40, 30, 3)),
        "constant": np.full((40, 30, 3), 77),
    }[kind].astype(np.uint8)
    cfg = only(equalize_p=1.0)
    out = to_image(photometric_batch(to_batch(image), cfg, torch.Generator().manual_seed(0)))
    assert np.array_equal(out, np.asarray(ImageOps.equalize(Image.fromarray(image))))


def expected_shadow_map(x0: int, y0: int, size: int, turns: int, lr: bool, tb: bool, invert: bool) -> np.ndarray:
    """The texture crop turned with ``np.rot90``, then mirrored left-right, then top-bottom, then inverted."""
    crop = shadow_texture().numpy()[y0 : y0 + size, x0 : x0 + size]
    crop = np.rot90(crop, turns)
    crop = crop[:, ::-1] if lr else crop
    crop = crop[::-1] if tb else crop
    return 255.0 - crop if invert else crop


@pytest.mark.parametrize(("turns", "lr", "tb", "invert"),
                         [(1, False, False, False), (2, True, False, True), (3, False, True, False),
                          (1, True, True, True)])
def test_shadow_darkens_by_the_turned_and_mirrored_texture_crop(turns, lr, tb, invert):
    size, intensity = 48, 0.25
    cfg = only(shadow_p=1.0)
    params = params_for(cfg, 1, crop_x=100, crop_y=300, crop_w=size, crop_h=size, quarter_turns=turns,
                        flip_lr=lr, flip_tb=tb, invert=invert, intensity=intensity)
    texture = expected_shadow_map(100, 300, size, turns, lr, tb, invert)
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    out = to_image(apply_photometric(to_batch(image), params, cfg)).astype(int)
    want = np.floor(255 * (1 - intensity * texture / 255))[:, :, None]
    diff = np.abs(out - want)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.95
    assert out.min() < 255 - 0.2 * 255 * intensity  # the crop really darkens somewhere


def bilinear(texture: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``texture`` at pixel coordinates (pixel centres at integers)."""
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return texture[np.clip(yy, 0, texture.shape[0] - 1), np.clip(xx, 0, texture.shape[1] - 1)]

    return ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
            + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))


def test_shadow_crop_is_resized_bilinearly_to_the_image():
    x0, y0, crop_w, crop_h, height, width = 200, 200, 32, 16, 24, 64
    params = params_for(only(shadow_p=1.0), 1, crop_x=x0, crop_y=y0, crop_w=crop_w, crop_h=crop_h,
                        quarter_turns=2, flip_lr=True, flip_tb=True, invert=False)
    maps = shadow_maps(params, (height, width))[0, 0].numpy()
    # A half turn and both mirrors undo each other: output pixel centres map onto the crop
    # as in a half-pixel-centred resize, (j + 0.5) * crop / size - 0.5.
    xs = x0 + (np.arange(width) + 0.5) * crop_w / width - 0.5
    ys = y0 + (np.arange(height) + 0.5) * crop_h / height - 0.5
    want = bilinear(shadow_texture().numpy().astype(float), xs[None, :], ys[:, None])
    assert want.std() > 10 and np.abs(maps - want).max() < 1e-2


def test_noise_std_matches_the_drawn_choice():
    image = np.full((128, 128, 3), 128, dtype=np.uint8)
    cfg = only(noise_p=1.0, noise_std=(3.0, 4.0))
    batch = to_batch(image).expand(8, -1, -1, -1)
    generator = torch.Generator().manual_seed(5)
    params = sample_photometric(cfg, 8, generator, "cpu")
    out = apply_photometric(batch, params, cfg).float()
    assert set(params.noise_std.tolist()) == {3.0, 4.0}
    for sample, std in zip(out, params.noise_std.tolist()):
        # Truncation adds a uniform rounding error: variance std^2 + 1/12, mean -0.5.
        assert abs(sample.std().item() - math.sqrt(std**2 + 1 / 12)) < 0.1
        assert abs(sample.mean().item() - 127.5) < 0.1


def test_blur_matches_a_separable_gaussian_and_sigma_zero_is_identity():
    image = np.random.default_rng(6).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    cfg = only(blur_p=1.0, blur_sigma=(0.0, 1.2))
    batch = to_batch(image).expand(2, -1, -1, -1)
    params = params_for(cfg, 2)._replace(blur_sigma=torch.tensor([0.0, 1.1]))
    out = apply_photometric(batch, params, cfg).numpy()
    assert np.array_equal(out[0], batch[0].numpy())
    radius = 4  # ceil(3 * 1.2)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / 1.1) ** 2)
    kernel /= kernel.sum()
    rows = np.pad(image.astype(float), ((0, 0), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(k * rows[:, i : i + image.shape[1]] for i, k in enumerate(kernel))
    cols = np.pad(rows, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
    cols = sum(k * cols[i : i + image.shape[0]] for i, k in enumerate(kernel))
    assert np.abs(out[1].transpose(1, 2, 0) - np.round(cols)).max() <= 1


def test_batch_equals_each_sample_alone():
    # Every random value is in the parameters (the noise field too, by its seed): exact.
    cfg = PhotometricConfig(equalize_p=0.5)
    images = torch.from_numpy(np.random.default_rng(7).integers(0, 256, (6, 3, 32, 40), dtype=np.uint8))
    params = sample_photometric(cfg, 6, torch.Generator().manual_seed(8), "cpu")
    assert params.noise.all() and 0 < params.equalize.sum() < 6 and params.noise_seed.unique().numel() == 6
    together = apply_photometric(images, params, cfg)
    assert torch.equal(together, apply_photometric(images, params, cfg))
    for i in range(6):
        alone = PhotometricParams(*(field[i : i + 1] for field in params))
        assert torch.equal(together[i], apply_photometric(images[i : i + 1], alone, cfg)[0])


def test_noise_field_is_the_seeded_standard_normal_of_each_sample():
    seeds = torch.tensor([5, 123456789012345, 5])
    fields = noise_fields(seeds, (3, 16, 20), torch.device("cpu"))
    assert fields.shape == (3, 3, 16, 20) and torch.equal(fields[0], fields[2])
    assert torch.equal(fields[1], torch.randn(3, 16, 20, generator=torch.Generator().manual_seed(123456789012345)))
    assert not torch.equal(fields[0], fields[1])
    # In T: a grey image plus std * field, floored and clipped.
    cfg = only(noise_p=1.0, noise_std=(4.0,))
    params = params_for(cfg, 3)._replace(noise_seed=seeds)
    out = apply_photometric(torch.full((3, 3, 16, 20), 128, dtype=torch.uint8), params, cfg)
    assert torch.equal(out, torch.floor(128 + 4.0 * fields).clamp(0, 255).to(torch.uint8))


def test_same_seed_same_output_and_worker_path_equals_batch_path():
    image = np.random.default_rng(9).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    cfg = PhotometricConfig()
    first = photometric_batch(to_batch(image), cfg, torch.Generator().manual_seed(1))
    assert torch.equal(first, photometric_batch(to_batch(image), cfg, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, photometric_batch(to_batch(image), cfg, torch.Generator().manual_seed(2)))
    assert not torch.equal(first, to_batch(image))
    worker = photometric(image, cfg, np.random.default_rng(11))
    seed = int(np.random.default_rng(11).integers(0, 2**63 - 1))
    batch = photometric_batch(to_batch(image), cfg, torch.Generator().manual_seed(seed))
    assert worker.shape == image.shape and worker.dtype == np.uint8
    assert np.array_equal(worker, to_image(batch))
    assert np.array_equal(worker, photometric(image, cfg, np.random.default_rng(11)))


def test_texture_is_deterministic_and_spans_dark_and_light():
    texture = shadow_texture()
    shadow_texture.cache_clear()
    again = shadow_texture()
    assert texture is not again and torch.equal(texture, again)
    assert texture.shape == (TEXTURE_SIZE, TEXTURE_SIZE) and not texture.isnan().any()
    assert texture.min() < 50 and texture.max() > 200 and torch.equal(texture, texture.round())
    assert 0.2 < (texture > 128).float().mean() < 0.8


def test_everything_off_is_identity():
    images = torch.from_numpy(np.random.default_rng(12).integers(0, 256, (3, 3, 17, 19), dtype=np.uint8))
    assert torch.equal(photometric_batch(images, only(), torch.Generator().manual_seed(0)), images)


def test_config_accepts_old_strengths_and_validates():
    assert PhotometricConfig(brightness=0.2).brightness == pytest.approx((0.8, 1.2))
    loaded = from_dict(PhotometricConfig, {"contrast": 0.5, "saturation": [0.7, 1.1], "noise_std": [5]})
    assert loaded.contrast == (0.5, 1.5) and loaded.saturation == (0.7, 1.1) and loaded.noise_std == (5.0,)
    with pytest.raises(ConfigError, match="noise_std"):
        from_dict(PhotometricConfig, {"noise_std": 8.0})
    assert PhotometricConfig().problems() == []
    bad = PhotometricConfig(shadow_p=1.5, sharpness=(2.0, 1.0), shadow_intensity=(0.0, 1.5), shadow_crop=(0.0, 0.5),
                            noise_std=(), blur_sigma=(0.0, 60.0))
    fields = [p.split(":")[0] for p in bad.problems()]
    assert fields == ["shadow_p", "sharpness", "shadow_intensity", "shadow_crop", "noise_std", "blur_sigma"]
