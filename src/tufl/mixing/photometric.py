"""Photometric transform T on batches of device tensors (for mixed stage-two images).

The data workers apply T to single numpy images with Pillow
(:func:`tufl.data.transforms.photometric`); mixed images are produced on the
device, so this module applies the same kinds of change, with the same
:class:`~tufl.data.transforms.PhotometricConfig`, to a whole ``uint8`` batch at
once. Per-sample parameters are drawn from the generator passed in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tufl.data.transforms import PhotometricConfig
from tufl.mixing.draws import uniform

_LUMA = (0.299, 0.587, 0.114)


def _factor(strength: float, active: Tensor, generator: torch.Generator, device: torch.device) -> Tensor:
    draw = uniform(active.shape, generator, device) * 2 * strength + (1 - strength)
    return torch.where(active, draw, torch.ones_like(draw)).view(-1, 1, 1, 1)


def _gaussian_blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with a per-sample sigma (``[B]``, 0 = unchanged)."""
    radius = int(torch.ceil(3 * sigma.max()).clamp(min=1).item())
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    safe = sigma.clamp(min=1e-3).view(-1, 1)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / safe) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (offsets == 0).to(images.dtype).expand_as(kernel)
    kernel = torch.where((sigma > 0).view(-1, 1), kernel, identity)
    b, c, h, w = images.shape
    x = images.reshape(1, b * c, h, w)
    k = kernel.repeat_interleave(c, dim=0)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(b * c, 1, 1, -1), groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(b * c, 1, -1, 1), groups=b * c)
    return x.view(b, c, h, w)


def photometric_batch(images: Tensor, cfg: PhotometricConfig, generator: torch.Generator) -> Tensor:
    """Apply T to ``uint8`` images ``[B, 3, H, W]``; returns ``uint8`` images.

    Brightness scales the image; contrast blends with the image's mean grey;
    saturation blends with the per-pixel grey; sharpness blends with a blurred
    copy (factor > 1 sharpens); then blur and Gaussian noise, each with its
    probability. (Histogram equalisation is only applied in the data workers.)
    """
    device = images.device
    b = images.shape[0]
    x = images.float()
    luma = torch.tensor(_LUMA, device=device).view(1, 3, 1, 1)
    jitter = uniform((b,), generator, device) < cfg.jitter_p
    if cfg.brightness > 0:
        x = x * _factor(cfg.brightness, jitter, generator, device)
    if cfg.contrast > 0:
        mean = (x * luma).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        f = _factor(cfg.contrast, jitter, generator, device)
        x = mean + f * (x - mean)
    if cfg.saturation > 0:
        grey = (x * luma).sum(1, keepdim=True)
        f = _factor(cfg.saturation, jitter, generator, device)
        x = grey + f * (x - grey)
    if cfg.sharpness > 0:
        soft = _gaussian_blur(x.clamp(0, 255), torch.full((b,), 1.0, device=device))
        f = _factor(cfg.sharpness, jitter, generator, device)
        x = soft + f * (x - soft)
    x = x.clamp(0, 255)
    if cfg.blur_p > 0:
        lo, hi = cfg.blur_sigma
        sigma = uniform((b,), generator, device) * (hi - lo) + lo
        sigma = torch.where(uniform((b,), generator, device) < cfg.blur_p, sigma, torch.zeros_like(sigma))
        x = _gaussian_blur(x, sigma)
    if cfg.noise_p > 0 and cfg.noise_std > 0:
        std = uniform((b,), generator, device) * cfg.noise_std
        std = torch.where(uniform((b,), generator, device) < cfg.noise_p, std, torch.zeros_like(std))
        noise = torch.randn(x.shape, generator=generator, device=generator.device).to(device)
        x = x + noise * std.view(-1, 1, 1, 1)
    return x.clamp(0, 255).round().to(torch.uint8)
