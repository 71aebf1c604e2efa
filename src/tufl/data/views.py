"""The two target views of TUFL and the warp that aligns them.

* weak view ``x1 = W(x_t)``: random scale, random crop, horizontal flip;
* strong view ``x2 = A(T(x1))``: photometric ``T`` then a random affine ``A``
  (rotation, shear, scale, horizontal flip; no translation; zero padding).

``A`` is carried as a 2x3 matrix ``theta`` in the convention of
``torch.nn.functional.affine_grid(theta, size, align_corners=False)``: it maps a
strong-view output location to the weak-view location it samples, both in
normalised ``[-1, 1]`` coordinates. :func:`warp_to_strong` applies it; ``x2`` is
built with it (:func:`strong_views`) and the trainer warps the weak-view logits with
it, so both are aligned pixel for pixel.

Where ``x2`` is built is ``TargetViewConfig.strong_view``: in the data worker, per
sample, or on the training device, batched (:mod:`tufl.data.device_views`); the
worker then ships the weak view, ``theta`` and T's drawn parameters. Every draw
comes from the sample's generator in the same order either way, so both paths give
the same ``theta`` and, on the CPU, the same ``x2``.

Geometry of ``A`` in pixel units, origin at the crop centre, x right, y down: a
weak-view point ``p`` goes to ``R(angle) @ Sh(shear) @ (scale * F(flip) @ p)`` with
``F`` the mirror ``x -> -x``, ``Sh`` the x-shear ``x -> x + tan(shear) * y`` and
``R`` the rotation that turns the picture counter-clockwise on screen by
``angle`` degrees. Rotations are true rotations in pixel space on non-square crops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tufl.runtime.checks import probability_fields_problems, range_problems, size_problems
from tufl.data.io import Interpolation, Size
from tufl.data.photometric import PhotometricParams, apply_photometric, params_as_sample
from tufl.data.transforms import (
    PhotometricConfig,
    draw_photometric,
    image_to_tensor,
    random_hflip,
    random_scale_crop,
)

StrongViewSetting = Literal["auto", "worker", "device"]
StrongViewPlace = Literal["worker", "device"]


@dataclass(frozen=True)
class AffineConfig:
    """Random affine A of the strong view (PAPER.md defaults). Angles in degrees."""

    # Rotation range in degrees.
    rotation: tuple[float, float] = (-30.0, 30.0)
    # Shear range in degrees.
    shear: tuple[float, float] = (-5.0, 5.0)
    # Zoom range.
    scale: tuple[float, float] = (0.8, 1.2)
    # Probability of a horizontal flip inside the affine.
    hflip_p: float = 0.5

    def problems(self) -> list[str]:
        out = range_problems("rotation", self.rotation, -180.0, 180.0)
        out += range_problems("shear", self.shear, -60.0, 60.0)
        out += range_problems("scale", self.scale, 1e-3, 10.0)
        out += probability_fields_problems(self, ("hflip_p",))
        return out


@dataclass(frozen=True)
class TargetViewConfig:
    """Weak view (crop, random scale, flip) and strong view (photometric T, affine A).

    A weak-view scale below what the crop needs pads the crop with black pixels,
    which the unsupervised loss then treats as image content: keep
    ``scale_range[0]`` large enough for the target resize and crop.
    """

    # Weak-view crop (width, height), sides 1..16384 pixels.
    crop_size: tuple[int, int] = (512, 512)
    # Weak-view random rescaling range before cropping, within [0.001, 100].
    scale_range: tuple[float, float] = (1.0, 1.5)
    # Weak-view random horizontal flip.
    hflip: bool = True
    # Photometric transform T of the strong view.
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    # Random affine A of the strong view (no translation, zero padding).
    affine: AffineConfig = field(default_factory=AffineConfig)
    # Where the strong view's photometric T and affine A run: "worker" (the data
    # workers, per sample), "device" (the workers ship the weak view, the affine and
    # T's drawn parameters; the training device applies T and A to the whole batch),
    # "auto" (device when training on CUDA, worker otherwise). Same draws either way:
    # the same views on the CPU; on CUDA T's noise comes from CUDA's generator.
    strong_view: Literal["auto", "worker", "device"] = "auto"

    def problems(self) -> list[str]:
        out = size_problems("crop_size", self.crop_size)
        out += range_problems("scale_range", self.scale_range, 1e-3, 100.0)
        if self.strong_view not in ("auto", "worker", "device"):
            out.append(f"strong_view: must be 'auto', 'worker' or 'device', got {self.strong_view!r}")
        out += [f"photometric.{p}" for p in self.photometric.problems()]
        out += [f"affine.{p}" for p in self.affine.problems()]
        return out


def resolve_strong_view(setting: StrongViewSetting, device: torch.device | str) -> StrongViewPlace:
    """Where the strong view is built when training on ``device``: "auto" means the
    device on CUDA, the workers otherwise."""
    if setting == "auto":
        return "device" if torch.device(device).type == "cuda" else "worker"
    if setting not in ("worker", "device"):
        raise ValueError(f"strong_view must be 'auto', 'worker' or 'device', got {setting!r}")
    return setting


class AffineParams(NamedTuple):
    """The draw of A: angle and shear in degrees, isotropic scale, horizontal flip."""

    angle: float
    shear: float
    scale: float
    flip: bool


def sample_affine(cfg: AffineConfig, rng: np.random.Generator) -> AffineParams:
    """Draw the parameters of A uniformly from the configured ranges."""
    angle = float(rng.uniform(*cfg.rotation))
    shear = float(rng.uniform(*cfg.shear))
    scale = float(rng.uniform(*cfg.scale))
    flip = bool(rng.random() < cfg.hflip_p)
    return AffineParams(angle, shear, scale, flip)


def affine_matrix(params: AffineParams) -> np.ndarray:
    """Forward 2x2 matrix of A (weak -> strong) in centred pixel coordinates, float64."""
    a = math.radians(params.angle)
    rotate = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    shear = np.array([[1.0, math.tan(math.radians(params.shear))], [0.0, 1.0]])
    mirror = np.diag([-1.0 if params.flip else 1.0, 1.0])
    return rotate @ shear @ (params.scale * mirror)


def affine_theta(params: AffineParams, size: Size) -> np.ndarray:
    """``theta`` (float32 ``[2, 3]``) for ``affine_grid(..., align_corners=False)`` on a
    ``size = (width, height)`` view: strong-view output -> weak-view input, normalised."""
    width, height = size
    inverse = np.linalg.inv(affine_matrix(params))
    to_pixels = np.diag([width / 2.0, height / 2.0])
    to_unit = np.diag([2.0 / width, 2.0 / height])
    theta = np.zeros((2, 3), dtype=np.float64)
    theta[:, :2] = to_unit @ inverse @ to_pixels
    return theta.astype(np.float32)


def warp_to_strong(
    maps: Tensor, theta: Tensor, mode: Literal["bilinear", "nearest"] = "bilinear"
) -> tuple[Tensor, Tensor]:
    """Warp weak-view maps ``[B, C, H, W]`` into the strong view's geometry.

    Returns ``(warped [B, C, H, W], valid [B, H, W] bool)``. Outside the weak view
    the maps are zero; ``valid`` is False wherever a sample reaches outside the
    weak view (for bilinear: wherever the interpolation touches the padding).
    Integer maps (labels) with ``mode="nearest"`` keep their dtype; low-precision
    float maps are warped in float32 (exact coordinates) and cast back.
    """
    if maps.dim() != 4:
        raise ValueError(f"warp_to_strong: maps must be [B, C, H, W], got {tuple(maps.shape)}")
    batch, _, height, width = maps.shape
    if theta.shape != (batch, 2, 3):
        raise ValueError(f"warp_to_strong: theta must be [{batch}, 2, 3], got {tuple(theta.shape)}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"warp_to_strong: mode must be 'bilinear' or 'nearest', got {mode!r}")
    work_dtype = torch.float64 if maps.dtype == torch.float64 else torch.float32
    work = maps.to(work_dtype)
    grid = F.affine_grid(theta.to(device=maps.device, dtype=work_dtype), [batch, 1, height, width],
                         align_corners=False)
    warped = F.grid_sample(work, grid, mode=mode, padding_mode="zeros", align_corners=False)
    # Same un-normalisation as grid_sample with align_corners=False.
    ix = ((grid[..., 0] + 1) * width - 1) / 2
    iy = ((grid[..., 1] + 1) * height - 1) / 2
    if mode == "nearest":
        ix, iy = ix.round(), iy.round()
    valid = (ix >= 0) & (ix <= width - 1) & (iy >= 0) & (iy <= height - 1)
    if maps.is_floating_point() or mode == "nearest":
        warped = warped.to(maps.dtype)
    return warped, valid


def strong_views(weak: Tensor, theta: Tensor, params: PhotometricParams, cfg: PhotometricConfig) -> Tensor:
    """``x2 = A(T(x1))`` for ``uint8`` weak views ``[B, 3, H, W]``: T with the drawn
    ``params``, then the warp by ``theta`` ``[B, 2, 3]``, rounded to ``uint8``.

    The one implementation of both places (worker: a batch of one; device: the batch);
    each sample's result does not depend on the rest of the batch.
    """
    transformed = apply_photometric(weak, params, cfg)
    warped, _ = warp_to_strong(transformed.to(torch.float32), theta)
    return warped.round_().clamp_(0, 255).to(torch.uint8)


class TargetPair(NamedTuple):
    """Both views of one target image; tensors are CHW, ``label`` in the weak view.

    With the strong view left to the device, ``strong`` is None and ``photometric``
    holds T's draws (0-d CPU tensors, :func:`tufl.data.photometric.params_as_sample`).
    """

    weak: Tensor
    strong: Tensor | None
    theta: np.ndarray
    params: AffineParams
    label: np.ndarray | None
    photometric: dict[str, Tensor] | None = None

    def fields(self) -> dict[str, Tensor | dict[str, Tensor]]:
        """The sample fields: ``weak``, ``theta`` and ``strong`` or ``photometric``."""
        out: dict[str, Tensor | dict[str, Tensor]] = {"weak": self.weak, "theta": torch.from_numpy(self.theta)}
        if self.strong is not None:
            out["strong"] = self.strong
        else:
            assert self.photometric is not None
            out["photometric"] = self.photometric
        return out


def make_target_pair(
    image: np.ndarray,
    label: np.ndarray | None,
    cfg: TargetViewConfig,
    rng: np.random.Generator,
    interpolation: Interpolation = "bilinear",
    strong_view: StrongViewPlace = "worker",
) -> TargetPair:
    """Build ``x1 = W(x_t)`` and ``x2 = A(T(x1))`` from an ``uint8`` ``[H, W, 3]`` image.

    ``strong_view="device"`` draws everything but leaves ``x2`` to
    :func:`tufl.data.device_views.finish_target_batch` (``strong`` is None).
    """
    if strong_view not in ("worker", "device"):
        raise ValueError(f"make_target_pair: strong_view must be 'worker' or 'device', got {strong_view!r}")
    weak, weak_label = random_scale_crop(image, label, cfg.crop_size, cfg.scale_range, rng, interpolation)
    if cfg.hflip:
        weak, weak_label = random_hflip(weak, weak_label, rng)
    photometric_params = draw_photometric(cfg.photometric, rng)
    params = sample_affine(cfg.affine, rng)
    theta = affine_theta(params, cfg.crop_size)
    weak_tensor = image_to_tensor(weak)
    if strong_view == "device":
        return TargetPair(weak_tensor, None, theta, params, weak_label, params_as_sample(photometric_params))
    strong = strong_views(weak_tensor[None], torch.from_numpy(theta)[None], photometric_params, cfg.photometric)[0]
    return TargetPair(weak_tensor, strong, theta, params, weak_label)
