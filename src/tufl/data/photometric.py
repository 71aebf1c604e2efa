"""Photometric transform T of the strong target view and of the stage-two mixed images.

One implementation on ``uint8`` batches ``[B, 3, H, W]`` serves the data workers
(:func:`tufl.data.transforms.photometric` runs it on a batch of one) and the mixed
images. T follows the authors' release; in this order, every draw per sample:

1. colour jitter with Pillow ``ImageEnhance`` semantics: brightness, contrast,
   saturation ("Color") and sharpness, each ``degenerate + f * (x - degenerate)``
   clipped and truncated to integers like Pillow's ``Image.blend``;
2. a shadow overlay: a crop of a procedural shadow texture, turned by 90, 180 or
   270 degrees, maybe mirrored and inverted, resized to the image and multiplied in;
3. Gaussian noise with a standard deviation chosen per sample;
4. Gaussian blur with a per-sample sigma;
5. histogram equalisation per channel (Pillow ``ImageOps.equalize``).

:func:`sample_photometric` draws every random value of T from the ``torch.Generator``
passed in (on its device, moved to the images' device, :mod:`tufl.runtime.draws`),
including one ``noise_seed`` per sample; :func:`apply_photometric` is then a pure
function of the images and those parameters. Each sample's noise field comes from a
generator on the images' device seeded with its ``noise_seed``, so a batch gives the
same images as its samples one by one (the data workers' path equals the batched
training-device path, :mod:`tufl.data.device_views`). On a CUDA device that field
comes from CUDA's generator: equally distributed, not the same numbers as the CPU's.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from tufl.runtime.checks import probability_fields_problems, range_problems
from tufl.runtime.draws import integers, uniform

TEXTURE_SIZE = 512
_TEXTURE_SEED = 7_2024
_FACTORS = ("brightness", "contrast", "saturation", "sharpness")


def _pair(value: tuple[float, float] | float) -> tuple[float, float]:
    """A factor range; a single strength ``s`` means ``(1 - s, 1 + s)``."""
    if isinstance(value, (int, float)):
        return (1.0 - float(value), 1.0 + float(value))
    return tuple(float(v) for v in value)  # type: ignore[return-value]


@dataclass(frozen=True)
class PhotometricConfig:
    """Photometric transform T (authors' defaults): jitter, shadow, noise, blur, equalisation.

    Factor ranges are ``(min, max)`` with 1 = unchanged; a single number ``s`` (the
    old strength) means ``(1 - s, 1 + s)``. Grey levels are in 0..255 units.
    """

    # Probability of the colour-jitter block (brightness, contrast, saturation, sharpness).
    jitter_p: float = 1.0
    # Brightness factor range (1 = unchanged); a number s means (1 - s, 1 + s).
    brightness: tuple[float, float] | float = (0.4, 1.2)
    # Contrast factor range (1 = unchanged); a number s means (1 - s, 1 + s).
    contrast: tuple[float, float] | float = (0.4, 2.0)
    # Saturation factor range (1 = unchanged); a number s means (1 - s, 1 + s).
    saturation: tuple[float, float] | float = (0.5, 2.0)
    # Sharpness factor range (1 = unchanged); a number s means (1 - s, 1 + s).
    sharpness: tuple[float, float] | float = (0.4, 2.0)
    # Probability of the shadow overlay (a crop of a procedural shadow texture).
    shadow_p: float = 1.0
    # Range of the shadow intensity (darkening where the texture is white).
    shadow_intensity: tuple[float, float] = (0.01, 0.3)
    # Range of the shadow crop's width and height, as fractions of the texture's.
    shadow_crop: tuple[float, float] = (0.02, 0.5)
    # Probability of Gaussian noise.
    noise_p: float = 1.0
    # Noise standard deviations (0..255 units); one is chosen uniformly per sample.
    noise_std: tuple[float, ...] = (3.0, 4.0)
    # Probability of a Gaussian blur.
    blur_p: float = 1.0
    # Range of the blur sigma (pixels; 0 = unchanged).
    blur_sigma: tuple[float, float] = (0.0, 1.2)
    # Probability of histogram equalisation.
    equalize_p: float = 0.3

    def __post_init__(self) -> None:  # normalised at construction (the instance is frozen)
        for name in _FACTORS:
            object.__setattr__(self, name, _pair(getattr(self, name)))
        if isinstance(self.noise_std, list):
            object.__setattr__(self, "noise_std", tuple(self.noise_std))

    def problems(self) -> list[str]:
        out = probability_fields_problems(self, ("jitter_p", "shadow_p", "noise_p", "blur_p", "equalize_p"))
        for name in _FACTORS:
            out += range_problems(name, _pair(getattr(self, name)), 0.0, 10.0)
        out += range_problems("shadow_intensity", self.shadow_intensity, 0.0, 1.0)
        crop = range_problems("shadow_crop", self.shadow_crop, 0.0, 1.0)
        if not crop and self.shadow_crop[0] <= 0:
            crop = [f"shadow_crop: fractions must be > 0, got {self.shadow_crop}"]
        out += crop
        std = self.noise_std
        if not isinstance(std, (tuple, list)) or not std or not all(0 <= s <= 255 for s in std):
            out.append(f"noise_std: must be a non-empty list of standard deviations in [0, 255], got {std}")
        out += range_problems("blur_sigma", self.blur_sigma, 0.0, 50.0)
        return out


class PhotometricParams(NamedTuple):
    """Per-sample draws of T: tensors ``[B]`` on the images' device, except
    ``noise_seed`` (int64 on the CPU: read on the host, no device synchronisation)."""

    jitter: Tensor  # bool: colour jitter applied
    brightness: Tensor  # jitter factors (1 = unchanged)
    contrast: Tensor
    saturation: Tensor
    sharpness: Tensor
    shadow: Tensor  # bool: shadow overlay applied
    crop_x: Tensor  # crop box in texture pixels (int64)
    crop_y: Tensor
    crop_w: Tensor
    crop_h: Tensor
    quarter_turns: Tensor  # rotation of the crop in quarter turns (int64, 1..3)
    flip_lr: Tensor  # bool
    flip_tb: Tensor  # bool
    invert: Tensor  # bool: texture -> 255 - texture
    intensity: Tensor  # shadow intensity
    noise: Tensor  # bool: noise applied
    noise_std: Tensor
    blur: Tensor  # bool: blur applied
    blur_sigma: Tensor
    equalize: Tensor  # bool: histogram equalisation applied
    noise_seed: Tensor  # int64 on the CPU: seed of the sample's noise field


NOISE_SEED_HIGH = 2**63 - 1
"""Noise seeds are uniform in ``[0, NOISE_SEED_HIGH)``."""


@functools.lru_cache(maxsize=None)
def shadow_texture(device: torch.device | str = "cpu") -> Tensor:
    """The procedural shadow texture: float32 ``[512, 512]`` integer grey levels 0..255.

    Multi-octave smooth noise (coarse random grids upsampled bilinearly and summed)
    through a sigmoid threshold: soft-edged patches like foliage or building shadows.
    Built once from a fixed seed and cached per device.
    """
    device = torch.device(device)
    if device.type != "cpu":
        return shadow_texture("cpu").to(device)
    generator = torch.Generator().manual_seed(_TEXTURE_SEED)
    size = (TEXTURE_SIZE, TEXTURE_SIZE)
    field = torch.zeros(1, 1, *size)
    for cells, weight in ((3, 1.0), (6, 0.7), (12, 0.45), (24, 0.3), (48, 0.2), (96, 0.12)):
        coarse = torch.randn(1, 1, cells, cells, generator=generator)
        field += weight * F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    field = (field - field.mean()) / field.std()
    return (255.0 * torch.sigmoid(5.0 * (field - 0.25)))[0, 0].round()


def _range(bounds: tuple[float, float], batch: int, generator: torch.Generator, device: torch.device) -> Tensor:
    lo, hi = bounds
    return lo + uniform((batch,), generator, device) * (hi - lo)


def _chance(p: float, batch: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return uniform((batch,), generator, device) < p


def _crop_box(fractions: tuple[float, float], batch: int, generator: torch.Generator,
              device: torch.device) -> tuple[Tensor, Tensor]:
    """Crop sizes uniform in ``[f0 * S, f1 * S)`` and offsets uniform in ``[0, S - size]``."""
    lo = max(1, int(fractions[0] * TEXTURE_SIZE))
    span = max(1, int(fractions[1] * TEXTURE_SIZE) - lo)
    size = lo + (uniform((batch,), generator, device) * span).long().clamp(max=span - 1)
    room = TEXTURE_SIZE - size
    start = torch.minimum((uniform((batch,), generator, device) * (room + 1)).long(), room)
    return start, size


def sample_photometric(cfg: PhotometricConfig, batch: int, generator: torch.Generator,
                       device: torch.device | str) -> PhotometricParams:
    """Draw the parameters of T for ``batch`` samples (see :class:`PhotometricConfig`).

    The noise seeds are drawn last and brought to the CPU (with a CUDA ``generator``
    that is a host synchronisation; a CPU generator, as the workers and the mixer
    use, needs none).
    """
    device = torch.device(device)
    jitter = _chance(cfg.jitter_p, batch, generator, device)
    factors = [_range(_pair(getattr(cfg, name)), batch, generator, device) for name in _FACTORS]
    shadow = _chance(cfg.shadow_p, batch, generator, device)
    crop_x, crop_w = _crop_box(cfg.shadow_crop, batch, generator, device)
    crop_y, crop_h = _crop_box(cfg.shadow_crop, batch, generator, device)
    turns = 1 + integers(3, (batch,), generator).to(device, non_blocking=True)
    flips = [_chance(0.5, batch, generator, device) for _ in range(3)]
    intensity = _range(cfg.shadow_intensity, batch, generator, device)
    noise = _chance(cfg.noise_p, batch, generator, device)
    choice = integers(max(1, len(cfg.noise_std)), (batch,), generator).to(device, non_blocking=True)
    noise_std = torch.zeros(batch, device=device)
    for i, std in enumerate(cfg.noise_std):  # a handful of choices
        noise_std = torch.where(choice == i, float(std), noise_std)
    blur = _chance(cfg.blur_p, batch, generator, device)
    sigma = _range(cfg.blur_sigma, batch, generator, device)
    equalize = _chance(cfg.equalize_p, batch, generator, device)
    noise_seed = integers(NOISE_SEED_HIGH, (batch,), generator).cpu()
    return PhotometricParams(jitter, *factors, shadow, crop_x, crop_y, crop_w, crop_h, turns, *flips,
                             intensity, noise, noise_std, blur, sigma, equalize, noise_seed)


def _luma(x: Tensor) -> Tensor:
    """Pillow's ``convert("L")``: ``(19595 R + 38470 G + 7471 B + 32768) >> 16``, ``[B, 1, H, W]``.

    Exact in float32: every intermediate is an integer below 2**24.
    """
    weighted = 19595.0 * x[:, 0:1] + 38470.0 * x[:, 1:2] + 7471.0 * x[:, 2:3] + 32768.0
    return torch.floor(weighted / 65536.0)


def _black(x: Tensor) -> Tensor:
    return x.new_zeros(())


def _mean_grey(x: Tensor) -> Tensor:
    """Contrast's degenerate: ``int(mean(L) + 0.5)`` per sample, exact in integers."""
    total = _luma(x).to(torch.int64).sum(dim=(1, 2, 3))
    count = x.shape[-1] * x.shape[-2]
    return ((2 * total + count) // (2 * count)).to(x.dtype).view(-1, 1, 1, 1)


def _smooth(x: Tensor) -> Tensor:
    """Sharpness's degenerate: Pillow's SMOOTH filter ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13``
    rounded, border pixels unchanged (3x3 box sum from shifted slices, exact in float32)."""
    if x.shape[-2] < 3 or x.shape[-1] < 3:
        return x
    rows = x[:, :, :-2] + x[:, :, 1:-1] + x[:, :, 2:]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = torch.floor((box + 4.0 * x[:, :, 1:-1, 1:-1]) / 13.0 + 0.5)
    return out


def _jitter(x: Tensor, params: PhotometricParams, cfg: PhotometricConfig) -> Tensor:
    """Brightness, contrast, saturation, sharpness, each blended and truncated like Pillow."""
    degenerates = (_black, _mean_grey, _luma, _smooth)
    for name, degenerate in zip(_FACTORS, degenerates):
        if _pair(getattr(cfg, name)) == (1.0, 1.0):
            continue
        factor = torch.where(params.jitter, getattr(params, name), 1.0).view(-1, 1, 1, 1)
        base = degenerate(x)
        x = torch.floor((base + factor * (x - base)).clamp(0.0, 255.0))
    return x


def shadow_maps(params: PhotometricParams, size: tuple[int, int]) -> Tensor:
    """Per-sample shadow textures ``[B, 1, H, W]`` (0..255) for ``size = (height, width)``.

    Crop, quarter turns and flips are one affine map from output pixels to texture
    coordinates (normalised, ``align_corners=False``), sampled bilinearly at once.
    """
    device = params.intensity.device
    texture = shadow_texture(device)
    batch = params.intensity.shape[0]
    k = params.quarter_turns % 4
    cos = (k == 0).float() - (k == 2).float()
    sin = (k == 1).float() - (k == 3).float()
    lr = 1.0 - 2.0 * params.flip_lr.float()
    tb = 1.0 - 2.0 * params.flip_tb.float()
    sx, sy = params.crop_w / TEXTURE_SIZE, params.crop_h / TEXTURE_SIZE
    cx = (2 * params.crop_x + params.crop_w) / TEXTURE_SIZE - 1
    cy = (2 * params.crop_y + params.crop_h) / TEXTURE_SIZE - 1
    # texture = S @ R^k @ diag(lr, tb) @ output + centre, R = quarter turn of np.rot90.
    theta = torch.stack([
        torch.stack([sx * cos * lr, -sx * sin * tb, cx], dim=1),
        torch.stack([sy * sin * lr, sy * cos * tb, cy], dim=1),
    ], dim=1).float()
    grid = F.affine_grid(theta, [batch, 1, *size], align_corners=False)
    maps = F.grid_sample(texture.expand(batch, 1, -1, -1), grid, mode="bilinear",
                         padding_mode="border", align_corners=False)
    return torch.where(params.invert.view(-1, 1, 1, 1), 255.0 - maps, maps)


def gaussian_blur(x: Tensor, sigma: Tensor, radius: int) -> Tensor:
    """Separable Gaussian blur of ``[B, C, H, W]`` with per-sample ``sigma`` ``[B]``
    (0 = unchanged), a fixed kernel ``radius`` and reflect padding; not rounded.

    Each pass is a weighted sum of shifted slices (a few times faster on the CPU
    than a grouped convolution with a per-sample kernel, and per sample exact
    whatever the batch).
    """
    b, c, h, w = x.shape
    radius = min(radius, h - 1, w - 1)
    if radius < 1:
        return x
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    # sigma -> 0 leaves weight only at offset 0: the identity kernel.
    kernel = torch.exp(-0.5 * (offsets / sigma.to(x.dtype).clamp(min=1e-6).view(-1, 1)) ** 2)
    taps = (kernel / kernel.sum(dim=1, keepdim=True)).view(b, 1, 1, 1, -1)
    rows = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    out = rows[..., :w] * taps[..., 0]
    for i in range(1, 2 * radius + 1):
        out += rows[..., i : i + w] * taps[..., i]
    cols = F.pad(out, (0, 0, radius, radius), mode="reflect")
    out = cols[..., :h, :] * taps[..., 0]
    for i in range(1, 2 * radius + 1):
        out += cols[..., i : i + h, :] * taps[..., i]
    return out


def equalize(x: Tensor) -> Tensor:
    """Pillow's ``ImageOps.equalize`` per channel of integer-valued ``[B, C, H, W]`` images."""
    b, c, h, w = x.shape
    values = x.reshape(b * c, h * w).long()
    hist = torch.zeros(b * c, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(1, values, torch.ones((), dtype=torch.long, device=x.device).expand_as(values))
    bins = torch.arange(256, device=x.device).expand(b * c, -1)
    last = torch.where(hist > 0, bins, -1).amax(dim=1, keepdim=True)
    step = (h * w - hist.gather(1, last)) // 255
    below = hist.cumsum(dim=1) - hist
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp(max=255)
    identity = ((hist > 0).sum(dim=1, keepdim=True) < 2) | (step == 0)
    lut = torch.where(identity, bins, lut)
    return lut.gather(1, values).view(b, c, h, w).to(x.dtype)


def noise_fields(seeds: Tensor, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """Standard normal fields ``[B, *shape]`` on ``device``, sample ``b`` from a generator
    on ``device`` seeded with ``seeds[b]`` (CPU int64 ``[B]``; a loop over the batch).

    The same seed gives the same field on the same device type, alone or in a batch;
    CUDA's generator gives other numbers than the CPU's (equally distributed).
    """
    fields = [torch.randn(shape, generator=torch.Generator(device).manual_seed(seed), device=device)
              for seed in seeds.tolist()]
    return torch.stack(fields) if fields else torch.empty((0, *shape), device=device)


def apply_photometric(images: Tensor, params: PhotometricParams, cfg: PhotometricConfig) -> Tensor:
    """Apply T with drawn ``params`` to ``uint8`` images ``[B, 3, H, W]``; returns ``uint8``.

    Deterministic given ``params`` (the noise fields come from the per-sample
    ``noise_seed``, on the images' device: see :func:`noise_fields`); each sample's
    result does not depend on the rest of the batch. Blocks that ``cfg`` switches off
    are skipped.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"photometric: expected uint8 [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    x = images.float()
    if cfg.jitter_p > 0:
        x = _jitter(x, params, cfg)
    if cfg.shadow_p > 0 and cfg.shadow_intensity[1] > 0:
        strength = torch.where(params.shadow, params.intensity, 0.0).view(-1, 1, 1, 1)
        x = torch.floor(x * (1.0 - strength * shadow_maps(params, x.shape[-2:]) / 255.0))
    if cfg.noise_p > 0 and max(cfg.noise_std) > 0:
        std = torch.where(params.noise, params.noise_std, 0.0).view(-1, 1, 1, 1)
        field = noise_fields(params.noise_seed, tuple(x.shape[1:]), x.device)
        x = torch.floor((x + std * field).clamp(0.0, 255.0))
    if cfg.blur_p > 0 and cfg.blur_sigma[1] > 0:
        sigma = torch.where(params.blur, params.blur_sigma, 0.0)
        x = torch.floor(gaussian_blur(x, sigma, math.ceil(3 * cfg.blur_sigma[1])) + 0.5).clamp(0.0, 255.0)
    if cfg.equalize_p > 0:
        x = torch.where(params.equalize.view(-1, 1, 1, 1), equalize(x), x)
    return x.to(torch.uint8)


def photometric_batch(images: Tensor, cfg: PhotometricConfig, generator: torch.Generator) -> Tensor:
    """T on ``uint8`` images ``[B, 3, H, W]``: :func:`sample_photometric` then
    :func:`apply_photometric`."""
    params = sample_photometric(cfg, images.shape[0], generator, images.device)
    return apply_photometric(images, params, cfg)


def params_as_sample(params: PhotometricParams) -> dict[str, Tensor]:
    """The draws of a batch of one as a dict of 0-d CPU tensors: what a data worker ships
    (the default collate stacks them into ``[B]`` fields, :func:`params_from_batch`)."""
    if params.intensity.shape != (1,):
        raise ValueError(f"params_as_sample: expected a batch of one, got {tuple(params.intensity.shape)}")
    return {name: value[0].cpu() for name, value in params._asdict().items()}


def params_from_batch(fields: dict[str, Tensor], device: torch.device | str) -> PhotometricParams:
    """Collated draws (CPU tensors ``[B]``) -> :class:`PhotometricParams` on ``device``
    (non-blocking copies); ``noise_seed`` stays on the CPU."""
    missing = [name for name in PhotometricParams._fields if name not in fields]
    if missing:
        raise KeyError(f"photometric parameters lack {', '.join(missing)}")
    device = torch.device(device)
    return PhotometricParams(*(
        fields[name].cpu() if name == "noise_seed" else fields[name].to(device, non_blocking=True)
        for name in PhotometricParams._fields
    ))
