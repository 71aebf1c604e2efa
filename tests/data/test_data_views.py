"""Target views: affine geometry, warp alignment between weak and strong views, configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tufl.data.transforms import PhotometricConfig
from tufl.data.views import (
    AffineConfig,
    AffineParams,
    TargetViewConfig,
    affine_theta,
    make_target_pair,
    sample_affine,
    warp_to_strong,
)

NO_PHOTOMETRIC = PhotometricConfig(jitter_p=0.0, shadow_p=0.0, equalize_p=0.0, blur_p=0.0, noise_p=0.0)


def reference_source_pixel(params: AffineParams, width: int, height: int, px: int, py: int) -> tuple[float, float]:
    """Weak-view pixel coordinates sampled by strong-view pixel (px, py), undoing A step by step."""
    u, v = px + 0.5 - width / 2, py + 0.5 - height / 2
    a = math.radians(params.angle)
    # A rotates counter-clockwise on screen (y down): undo it with the opposite rotation.
    u, v = math.cos(a) * u - math.sin(a) * v, math.sin(a) * u + math.cos(a) * v
    u = u - math.tan(math.radians(params.shear)) * v  # undo x-shear
    u, v = u / params.scale, v / params.scale
    if params.flip:
        u = -u
    return u + width / 2 - 0.5, v + height / 2 - 0.5


CASES = [
    AffineParams(30.0, 0.0, 1.0, False),
    AffineParams(-17.0, 0.0, 1.0, False),
    AffineParams(0.0, 5.0, 1.0, False),
    AffineParams(0.0, 0.0, 1.2, False),
    AffineParams(0.0, 0.0, 1.0, True),
    AffineParams(23.0, -4.0, 0.85, True),
]


@pytest.mark.parametrize("params", CASES)
def test_theta_grid_matches_hand_computed_sample_points(params):
    width, height = 12, 7  # non-square: rotation must be a true rotation in pixels
    theta = torch.from_numpy(affine_theta(params, (width, height)))[None]
    grid = F.affine_grid(theta.double(), [1, 1, height, width], align_corners=False)[0]
    for py in range(height):
        for px in range(width):
            ex, ey = reference_source_pixel(params, width, height, px, py)
            gx = ((grid[py, px, 0].item() + 1) * width - 1) / 2
            gy = ((grid[py, px, 1].item() + 1) * height - 1) / 2
            assert gx == pytest.approx(ex, abs=1e-4) and gy == pytest.approx(ey, abs=1e-4)


def _theta(params: AffineParams, size: tuple[int, int]) -> torch.Tensor:
    return torch.from_numpy(affine_theta(params, size))[None]


def test_quarter_turn_flip_and_half_turn_are_exact_pixel_permutations():
    square = torch.arange(16.0).reshape(1, 1, 4, 4)
    rotated, valid = warp_to_strong(square, _theta(AffineParams(90, 0, 1, False), (4, 4)), "nearest")
    assert valid.all()
    assert np.array_equal(rotated[0, 0].numpy(), np.rot90(square[0, 0].numpy()))  # counter-clockwise
    wide = torch.arange(24.0).reshape(1, 1, 4, 6)
    flipped, _ = warp_to_strong(wide, _theta(AffineParams(0, 0, 1, True), (6, 4)))
    assert torch.allclose(flipped, wide.flip(-1), atol=1e-5)
    turned, valid = warp_to_strong(wide, _theta(AffineParams(180, 0, 1, False), (6, 4)))
    assert valid.all() and torch.allclose(turned, wide.flip(-1).flip(-2), atol=1e-4)


def _bilinear_reference(image: np.ndarray, x: float, y: float) -> tuple[np.ndarray, bool]:
    channels, height, width = image.shape
    x0, y0 = math.floor(x), math.floor(y)
    out = np.zeros(channels)
    for dy in (0, 1):
        for dx in (0, 1):
            weight = (1 - abs(x - (x0 + dx))) * (1 - abs(y - (y0 + dy)))
            if 0 <= x0 + dx < width and 0 <= y0 + dy < height:
                out += weight * image[:, y0 + dy, x0 + dx]
    return out, (0 <= x <= width - 1 and 0 <= y <= height - 1)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_warp_and_valid_mask_match_explicit_loops(mode):
    rng = np.random.default_rng(3)
    height, width = 6, 9
    maps = rng.normal(size=(2, 3, height, width))
    params = [AffineParams(25.0, 4.0, 0.9, False), AffineParams(-30.0, -5.0, 1.15, True)]
    theta = torch.from_numpy(np.stack([affine_theta(p, (width, height)) for p in params]))
    warped, valid = warp_to_strong(torch.from_numpy(maps), theta, mode)
    assert warped.dtype == torch.float64 and valid.dtype == torch.bool
    for b, p in enumerate(params):
        for py in range(height):
            for px in range(width):
                x, y = reference_source_pixel(p, width, height, px, py)
                if mode == "nearest":
                    xi, yi = round(x), round(y)
                    inside = 0 <= xi < width and 0 <= yi < height
                    expected = maps[b, :, yi, xi] if inside else np.zeros(3)
                else:
                    expected, inside = _bilinear_reference(maps[b], x, y)
                assert bool(valid[b, py, px]) == inside
                assert np.allclose(warped[b, :, py, px].numpy(), expected, atol=1e-5)
    assert 0 < valid.float().mean() < 1  # the cases really cross the border


def test_warp_keeps_label_dtype_and_low_precision_maps_use_exact_coordinates():
    labels = torch.randint(0, 19, (2, 1, 16, 20))
    theta = torch.from_numpy(np.stack([affine_theta(AffineParams(12, 3, 1.1, True), (20, 16))] * 2))
    warped, _ = warp_to_strong(labels, theta, "nearest")
    assert warped.dtype == torch.int64
    logits = torch.randn(2, 5, 16, 20)
    full, valid_full = warp_to_strong(logits, theta)
    half, valid_half = warp_to_strong(logits.bfloat16(), theta)
    assert half.dtype == torch.bfloat16 and torch.equal(valid_full, valid_half)
    assert torch.allclose(half.float(), full, atol=0.05)


@pytest.mark.cuda
def test_warp_on_cuda_matches_cpu():
    maps = torch.randn(2, 4, 24, 32)
    theta = torch.from_numpy(np.stack([affine_theta(AffineParams(-20, 4, 0.9, True), (32, 24))] * 2))
    cpu, cpu_valid = warp_to_strong(maps, theta)
    gpu, gpu_valid = warp_to_strong(maps.cuda(), theta)  # theta follows the maps' device
    assert gpu.device.type == "cuda" and torch.equal(gpu_valid.cpu(), cpu_valid)
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)


def test_warp_rejects_bad_shapes():
    with pytest.raises(ValueError, match="theta must be"):
        warp_to_strong(torch.zeros(2, 1, 4, 4), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="mode must be"):
        warp_to_strong(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 3), "bicubic")


def _block_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 128x96 image of 16x16 blocks, each block one class with its own random colour."""
    blocks = rng.integers(0, 19, (6, 8))
    label = np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1).astype(np.uint8)
    colours = rng.integers(0, 256, (19, 3)).astype(np.uint8)
    return colours[label], label, colours


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weak_label_warped_with_theta_matches_strong_view_pixels(seed):
    rng = np.random.default_rng(seed)
    image, label, colours = _block_scene(rng)
    cfg = TargetViewConfig(crop_size=(80, 64), scale_range=(1.0, 1.3), photometric=NO_PHOTOMETRIC)
    pair = make_target_pair(image, label, cfg, np.random.default_rng(100 + seed))
    # Scaling blends colours at block borders: compare where a pixel has a block's exact colour.
    weak = pair.weak.permute(1, 2, 0).numpy()
    weak_matches = (weak[:, :, None, :] == colours[None, None]).all(-1)
    weak_pure = weak_matches.any(-1)
    assert weak_pure.mean() > 0.5
    assert np.array_equal(weak_matches.argmax(-1)[weak_pure], pair.label[weak_pure])
    theta = torch.from_numpy(pair.theta)[None]
    strong_label, valid = warp_to_strong(torch.from_numpy(pair.label)[None, None], theta, "nearest")
    strong_label, valid = strong_label[0, 0].numpy(), valid[0].numpy()
    strong = pair.strong.permute(1, 2, 0).numpy()
    matches = (strong[:, :, None, :] == colours[None, None]).all(-1)
    pure = matches.any(-1) & valid
    assert pure.sum() > 0.5 * valid.sum()
    assert np.array_equal(matches.argmax(-1)[pure], strong_label[pure])


def test_target_pair_theta_is_the_returned_params_and_strong_is_the_warped_weak_view():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    cfg = TargetViewConfig(crop_size=(24, 16), photometric=NO_PHOTOMETRIC)
    pair = make_target_pair(image, None, cfg, np.random.default_rng(9))
    assert pair.label is None
    assert np.array_equal(pair.theta, affine_theta(pair.params, (24, 16)))
    warped, _ = warp_to_strong(pair.weak[None].float(), torch.from_numpy(pair.theta)[None])
    assert torch.equal(pair.strong, warped[0].round().clamp(0, 255).to(torch.uint8))
    again = make_target_pair(image, None, cfg, np.random.default_rng(9))
    assert torch.equal(again.strong, pair.strong) and again.params == pair.params
    other = make_target_pair(image, None, cfg, np.random.default_rng(10))
    assert other.params != pair.params


def test_sample_affine_stays_in_configured_ranges():
    cfg = AffineConfig()
    rng = np.random.default_rng(0)
    draws = [sample_affine(cfg, rng) for _ in range(200)]
    assert all(-30 <= d.angle <= 30 and -5 <= d.shear <= 5 and 0.8 <= d.scale <= 1.2 for d in draws)
    assert 60 < sum(d.flip for d in draws) < 140


def test_config_problems_name_the_field():
    assert TargetViewConfig().problems() == []
    assert AffineConfig(rotation=(10.0, -10.0)).problems()[0].startswith("rotation:")
    bad = TargetViewConfig(crop_size=(0, 8), photometric=PhotometricConfig(blur_p=1.5),
                           affine=AffineConfig(hflip_p=-0.1))
    problems = bad.problems()
    assert any(p.startswith("crop_size:") for p in problems)
    assert any(p.startswith("photometric.blur_p:") for p in problems)
    assert any(p.startswith("affine.hflip_p:") for p in problems)
