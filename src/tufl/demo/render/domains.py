"""The two demo domains: what their streets contain (:class:`Layout`) and how they look (:class:`Look`)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Mapping

import numpy as np

from tufl.demo.render.materials import REALISTIC_MATERIALS, SYNTHETIC_MATERIALS, Material

Domain = Literal["synthetic", "realistic"]


@dataclass(frozen=True)
class Layout:
    """What a domain's streets contain: camera, geometry and object statistics.

    Ranges are ``(low, high)`` of a uniform draw; ``roadside`` weights the four
    kinds of street border (buildings, wall, fence, park); counts of people are
    Poisson means per scene; ``vehicle_gap`` is the mean free gap (m) between
    vehicles in one lane.
    """

    hfov_deg: tuple[float, float]
    camera_height: tuple[float, float]
    horizon: tuple[float, float]
    ego_hood: bool
    lanes: tuple[int, int]
    lane_width: tuple[float, float]
    sidewalk_width: tuple[float, float]
    p_parking: float
    roadside: tuple[float, float, float, float]
    building_height: tuple[float, float]
    block_length: tuple[float, float]
    p_block_gap: float
    p_cross_street: float
    p_tree_row: float
    tree_spacing: tuple[float, float]
    palm_fraction: float
    pole_spacing: tuple[float, float]
    vehicle_gap: float
    truck_fraction: float
    bus_fraction: float
    p_tram: float
    persons: float
    cyclists: float
    motorcyclists: float
    parked_bicycles: float


@dataclass(frozen=True)
class Look:
    """How a domain's camera renders a scene (per-image values drawn from the ranges).

    ``blur_px`` is a Gaussian blur radius and ``shadow_blur_px`` the softness of
    cast shadows, both in pixels at an image width of 256 (scaled with the width).
    """

    materials: Mapping[str, Material]
    brightness: tuple[float, float]
    colour_cast: tuple[float, float, float]
    cast_jitter: float
    saturation: tuple[float, float]
    gamma: tuple[float, float]
    vignette: tuple[float, float]
    blur_px: tuple[float, float]
    noise_sigma: tuple[float, float]
    shadow_strength: float
    shadow_blur_px: float


@dataclass(frozen=True)
class DomainStyle:
    """A domain: what its scenes contain and how they look."""

    name: str
    layout: Layout
    look: Look


def _columns(**settings: tuple[Any, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``setting=(synthetic, realistic)`` pairs -> the keyword arguments of each domain."""
    return {k: v[0] for k, v in settings.items()}, {k: v[1] for k, v in settings.items()}


# The two domains side by side, what their streets contain: setting=(synthetic, realistic).
_LAYOUTS = _columns(
    hfov_deg=((56.0, 66.0), (46.0, 54.0)),
    camera_height=((1.3, 1.7), (1.15, 1.3)),
    horizon=((0.44, 0.52), (0.4, 0.46)),
    ego_hood=(False, True),
    lanes=((2, 5), (2, 3)),
    lane_width=((3.4, 3.9), (2.9, 3.3)),
    sidewalk_width=((2.5, 4.5), (2.5, 5.0)),
    p_parking=(0.25, 0.35),
    roadside=((0.5, 0.12, 0.12, 0.26), (0.72, 0.08, 0.08, 0.12)),
    building_height=((5.0, 45.0), (10.0, 24.0)),
    block_length=((10.0, 40.0), (15.0, 60.0)),
    p_block_gap=(0.35, 0.1),
    p_cross_street=(0.45, 0.35),
    p_tree_row=(0.5, 0.6),
    tree_spacing=((10.0, 20.0), (8.0, 14.0)),
    palm_fraction=(0.55, 0.0),
    pole_spacing=((18.0, 32.0), (12.0, 20.0)),
    vehicle_gap=(14.0, 30.0),
    truck_fraction=(0.1, 0.05),
    bus_fraction=(0.08, 0.04),
    p_tram=(0.05, 0.15),
    persons=(2.0, 7.0),
    cyclists=(0.3, 1.5),
    motorcyclists=(0.5, 0.2),
    parked_bicycles=(0.2, 1.5),
)

# The two domains side by side, how their cameras render: setting=(synthetic, realistic).
_LOOKS = _columns(
    brightness=((0.95, 1.1), (0.8, 1.0)),
    colour_cast=((1.0, 1.0, 1.0), (1.03, 1.0, 0.88)),
    cast_jitter=(0.04, 0.05),
    saturation=((1.15, 1.35), (0.7, 0.9)),
    gamma=((0.9, 1.0), (1.05, 1.3)),
    vignette=((0.0, 0.0), (0.25, 0.45)),
    blur_px=((0.0, 0.0), (0.35, 0.7)),
    noise_sigma=((0.0, 0.0), (3.0, 6.0)),
    shadow_strength=(0.45, 0.3),
    shadow_blur_px=(0.0, 3.0),
)

SYNTHETIC = DomainStyle(name="synthetic", layout=Layout(**_LAYOUTS[0]),
                        look=Look(materials=SYNTHETIC_MATERIALS, **_LOOKS[0]))
REALISTIC = DomainStyle(name="realistic", layout=Layout(**_LAYOUTS[1]),
                        look=Look(materials=REALISTIC_MATERIALS, **_LOOKS[1]))

DOMAIN_STYLES: Mapping[str, DomainStyle] = MappingProxyType(
    {SYNTHETIC.name: SYNTHETIC, REALISTIC.name: REALISTIC}
)


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A uniform draw from a ``(low, high)`` range."""
    return float(rng.uniform(bounds[0], bounds[1]))
