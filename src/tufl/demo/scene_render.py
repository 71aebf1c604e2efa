"""Procedural driving scenes for the built-in demo: drawn as label maps, rendered per domain.

A scene is drawn once, in perspective, as an *instance map*: every surface (a
facade, the windows of a block, a car body, a lane marking, a coat...) is an
instance that carries a Cityscapes label id and a colour drawn from its material.
The label map and the RGB image are both read off that map, so they agree pixel
for pixel. Objects are placed in a 3-D street (metres, camera at the origin
looking down +Z) and projected with a pinhole camera, so their image size follows
their depth; they are painted far to near.

The two domains differ the way a driving simulator and a real camera differ:

* ``synthetic`` (GTA5-like): flat shading, crisp edges, a saturated palette,
  sunny light with hard shadows, a wide-angle camera, wide roads, low-rise and
  high-rise buildings with gaps, palm trees, many vehicles, few pedestrians;
* ``realistic`` (Cityscapes-like): textured surfaces, muted overcast colours with
  a colour cast, soft shadows, vignetting, blur and sensor noise, a narrower
  camera on a car whose bonnet is visible (label "ego vehicle", ignored in
  training), narrower streets lined with continuous blocks, street trees, parked
  cars, trams, and many pedestrians and cyclists.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tufl.data.labels import CITYSCAPES_19

Domain = Literal["synthetic", "realistic"]
RGB = tuple[int, int, int]
Points = list[tuple[float, float]]

_LABEL_ID = {name: label_id for name, label_id, _ in CITYSCAPES_19}
ROAD = _LABEL_ID["road"]
SIDEWALK = _LABEL_ID["sidewalk"]
BUILDING = _LABEL_ID["building"]
WALL = _LABEL_ID["wall"]
FENCE = _LABEL_ID["fence"]
POLE = _LABEL_ID["pole"]
TRAFFIC_LIGHT = _LABEL_ID["traffic light"]
TRAFFIC_SIGN = _LABEL_ID["traffic sign"]
VEGETATION = _LABEL_ID["vegetation"]
TERRAIN = _LABEL_ID["terrain"]
SKY = _LABEL_ID["sky"]
PERSON = _LABEL_ID["person"]
RIDER = _LABEL_ID["rider"]
CAR = _LABEL_ID["car"]
TRUCK = _LABEL_ID["truck"]
BUS = _LABEL_ID["bus"]
TRAIN = _LABEL_ID["train"]
MOTORCYCLE = _LABEL_ID["motorcycle"]
BICYCLE = _LABEL_ID["bicycle"]
EGO_VEHICLE = 1  # Cityscapes label id of the recording car's bonnet (not a train class)

_SHADOW_RECEIVERS = (ROAD, SIDEWALK, TERRAIN)
_Z_NEAR = 1.0  # metres; nothing is drawn closer to the camera
_FAR = 400.0  # metres; extent of the ground plane and distance of the skyline


# --------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class Material:
    """Colour model of one kind of surface.

    ``colours`` are the base colours one instance picks from; ``jitter`` is the
    relative per-instance colour variation; ``fine`` and ``coarse`` are the
    amplitudes of grain-sized and patch-sized brightness texture; ``gradient`` is
    the relative brightness change from the top to the bottom of the image.
    """

    colours: tuple[RGB, ...]
    jitter: float = 0.06
    fine: float = 0.0
    coarse: float = 0.0
    gradient: float = 0.0


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


def _m(*colours: RGB, jitter: float = 0.06, fine: float = 0.0, coarse: float = 0.0,
       gradient: float = 0.0) -> Material:
    return Material(tuple(colours), jitter, fine, coarse, gradient)


_SYNTHETIC_MATERIALS = MappingProxyType({
    "sky": _m((80, 145, 230), (100, 160, 235), jitter=0.05, gradient=0.45),
    "road": _m((78, 78, 84), (92, 90, 92), (70, 72, 80), jitter=0.05, fine=0.015),
    "marking": _m((235, 235, 225), (240, 205, 50), jitter=0.03),
    "rail": _m((170, 170, 175)),
    "sidewalk": _m((195, 185, 170), (175, 175, 180), (205, 180, 160), jitter=0.05),
    "kerb": _m((220, 215, 205)),
    "terrain": _m((120, 180, 55), (150, 175, 75), (185, 160, 105), jitter=0.07),
    "facade": _m((205, 170, 125), (228, 218, 195), (175, 100, 80), (135, 150, 170),
                 (235, 200, 150), (205, 205, 210), (160, 175, 150), jitter=0.06),
    "cornice": _m((185, 185, 185), (150, 140, 130)),
    "window": _m((85, 130, 185), (60, 95, 140), (130, 170, 210), jitter=0.07),
    "shop": _m((40, 60, 85), (75, 95, 120)),
    "distant": _m((150, 160, 180), (175, 175, 185), jitter=0.05),
    "wall": _m((195, 190, 175), (165, 155, 140), (205, 165, 130)),
    "fence_post": _m((110, 110, 118), (95, 72, 50)),
    "fence_mesh": _m((175, 175, 165), (145, 125, 95)),
    "pole": _m((135, 135, 140), (95, 100, 108)),
    "light_box": _m((45, 45, 40), (60, 75, 50)),
    "lamp_red": _m((235, 40, 30), jitter=0.02),
    "lamp_amber": _m((245, 185, 30), jitter=0.02),
    "lamp_green": _m((40, 225, 95), jitter=0.02),
    "lamp_off": _m((40, 40, 40), jitter=0.02),
    "lamp_head": _m((225, 225, 200)),
    "sign_red": _m((225, 30, 30), jitter=0.03),
    "sign_blue": _m((30, 85, 215), jitter=0.03),
    "sign_white": _m((245, 245, 245), jitter=0.02),
    "sign_yellow": _m((250, 205, 30), jitter=0.03),
    "sign_green": _m((25, 140, 65), jitter=0.03),
    "sign_back": _m((150, 150, 155)),
    "foliage": _m((65, 150, 45), (90, 165, 40), (55, 130, 60), jitter=0.07, fine=0.04),
    "trunk": _m((115, 85, 50)),
    "skin": _m((240, 195, 165), (205, 155, 115), (145, 100, 72), (100, 68, 48), jitter=0.04),
    "hair": _m((45, 32, 20), (95, 62, 30), (205, 175, 105), (22, 22, 22)),
    "clothes": _m((205, 40, 40), (40, 85, 205), (240, 240, 240), (30, 30, 34), (245, 205, 40),
                  (60, 165, 85), (155, 60, 165), (90, 90, 95), jitter=0.08),
    "car_paint": _m((205, 30, 30), (30, 60, 195), (240, 240, 240), (25, 25, 30), (190, 190, 198),
                    (245, 205, 30), (40, 145, 70), (235, 120, 30), jitter=0.05),
    "glass": _m((50, 72, 95), (32, 42, 58)),
    "tyre": _m((26, 26, 26), jitter=0.02),
    "tail_light": _m((215, 20, 20), jitter=0.03),
    "head_light": _m((250, 250, 225), jitter=0.02),
    "plate": _m((235, 235, 235), jitter=0.02),
    "truck_paint": _m((240, 240, 240), (205, 40, 40), (40, 85, 165), (235, 150, 40)),
    "bus_paint": _m((240, 240, 240), (250, 200, 20), (40, 120, 205), (205, 40, 40)),
    "tram_paint": _m((225, 40, 40), (250, 250, 250), (250, 210, 30), (40, 90, 175)),
    "bike_frame": _m((205, 30, 30), (30, 30, 30), (40, 90, 205), (225, 225, 225)),
    "moto_body": _m((30, 30, 30), (205, 30, 30), (40, 60, 185), (245, 140, 20)),
    "hood": _m((40, 40, 45)),
})

_REALISTIC_MATERIALS = MappingProxyType({
    "sky": _m((196, 201, 206), (178, 188, 202), (214, 214, 212), jitter=0.05, coarse=0.07,
              gradient=0.1),
    "road": _m((112, 106, 104), (96, 96, 99), (122, 116, 110), jitter=0.05, fine=0.07, coarse=0.1),
    "marking": _m((205, 205, 198), jitter=0.04, fine=0.06, coarse=0.12),
    "rail": _m((140, 136, 130), fine=0.05),
    "sidewalk": _m((152, 142, 136), (136, 132, 132), (162, 150, 138), jitter=0.05, fine=0.08,
                   coarse=0.08),
    "kerb": _m((168, 162, 156), fine=0.05),
    "terrain": _m((104, 116, 60), (122, 112, 80), (94, 106, 55), jitter=0.07, fine=0.16,
                  coarse=0.12),
    "facade": _m((168, 156, 145), (152, 136, 120), (188, 176, 160), (132, 116, 106),
                 (176, 166, 140), (142, 142, 142), jitter=0.06, fine=0.05, coarse=0.08),
    "cornice": _m((122, 116, 110), fine=0.05),
    "window": _m((46, 51, 56), (72, 77, 82), (92, 97, 102), jitter=0.06, fine=0.04),
    "shop": _m((36, 40, 45), (56, 60, 60), fine=0.05),
    "distant": _m((160, 162, 166), (148, 150, 150), jitter=0.04, fine=0.04),
    "wall": _m((142, 136, 126), (122, 110, 100), (162, 152, 140), fine=0.08, coarse=0.1),
    "fence_post": _m((82, 82, 80), (88, 72, 56), fine=0.05),
    "fence_mesh": _m((128, 128, 120), (118, 104, 86), fine=0.12),
    "pole": _m((108, 108, 102), (82, 86, 80), fine=0.04),
    "light_box": _m((36, 36, 36), (52, 56, 46)),
    "lamp_red": _m((200, 60, 45), jitter=0.04),
    "lamp_amber": _m((210, 165, 60), jitter=0.04),
    "lamp_green": _m((70, 190, 120), jitter=0.04),
    "lamp_off": _m((38, 38, 38), jitter=0.03),
    "lamp_head": _m((190, 190, 175)),
    "sign_red": _m((180, 45, 42), jitter=0.05),
    "sign_blue": _m((42, 72, 150), jitter=0.05),
    "sign_white": _m((212, 212, 206), jitter=0.04),
    "sign_yellow": _m((212, 182, 56), jitter=0.05),
    "sign_green": _m((40, 110, 70), jitter=0.05),
    "sign_back": _m((118, 118, 118), fine=0.04),
    "foliage": _m((64, 84, 40), (80, 96, 45), (54, 74, 42), jitter=0.08, fine=0.33, coarse=0.12),
    "trunk": _m((76, 66, 52), fine=0.1),
    "skin": _m((212, 170, 145), (180, 135, 105), (130, 92, 70), (92, 66, 50), jitter=0.05),
    "hair": _m((42, 34, 26), (86, 62, 38), (170, 150, 105), (28, 28, 28)),
    "clothes": _m((42, 42, 48), (72, 72, 78), (92, 62, 52), (42, 52, 82), (152, 142, 132),
                  (122, 34, 34), (200, 200, 194), (96, 104, 74), jitter=0.08, fine=0.05),
    "car_paint": _m((60, 60, 66), (140, 140, 146), (200, 200, 200), (30, 30, 35), (92, 32, 32),
                    (42, 52, 82), (170, 170, 176), jitter=0.05, fine=0.02),
    "glass": _m((36, 41, 47), (52, 58, 64)),
    "tyre": _m((30, 30, 30), jitter=0.03),
    "tail_light": _m((170, 40, 35), jitter=0.05),
    "head_light": _m((210, 210, 196), jitter=0.04),
    "plate": _m((205, 205, 200), jitter=0.03),
    "truck_paint": _m((200, 200, 200), (122, 42, 42), (70, 86, 110)),
    "bus_paint": _m((220, 220, 214), (200, 172, 44), (196, 60, 52)),
    "tram_paint": _m((192, 192, 186), (200, 62, 52), (222, 202, 64)),
    "bike_frame": _m((40, 40, 42), (150, 40, 40), (60, 80, 130), (180, 180, 176)),
    "moto_body": _m((32, 32, 34), (140, 40, 40), (60, 66, 100)),
    "hood": _m((38, 38, 42), (62, 62, 68), jitter=0.04, coarse=0.06),
})

SYNTHETIC = DomainStyle(
    name="synthetic",
    layout=Layout(
        hfov_deg=(56.0, 66.0), camera_height=(1.3, 1.7), horizon=(0.44, 0.52), ego_hood=False,
        lanes=(2, 5), lane_width=(3.4, 3.9), sidewalk_width=(2.5, 4.5), p_parking=0.25,
        roadside=(0.5, 0.12, 0.12, 0.26), building_height=(5.0, 45.0), block_length=(10.0, 40.0),
        p_block_gap=0.35, p_cross_street=0.45, p_tree_row=0.5, tree_spacing=(10.0, 20.0),
        palm_fraction=0.55, pole_spacing=(18.0, 32.0), vehicle_gap=14.0, truck_fraction=0.1,
        bus_fraction=0.08, p_tram=0.05, persons=2.0, cyclists=0.3, motorcyclists=0.5,
        parked_bicycles=0.2,
    ),
    look=Look(
        materials=_SYNTHETIC_MATERIALS, brightness=(0.95, 1.1), colour_cast=(1.0, 1.0, 1.0),
        cast_jitter=0.04, saturation=(1.15, 1.35), gamma=(0.9, 1.0), vignette=(0.0, 0.0),
        blur_px=(0.0, 0.0), noise_sigma=(0.0, 0.0), shadow_strength=0.45, shadow_blur_px=0.0,
    ),
)

REALISTIC = DomainStyle(
    name="realistic",
    layout=Layout(
        hfov_deg=(46.0, 54.0), camera_height=(1.15, 1.3), horizon=(0.4, 0.46), ego_hood=True,
        lanes=(2, 3), lane_width=(2.9, 3.3), sidewalk_width=(2.5, 5.0), p_parking=0.35,
        roadside=(0.72, 0.08, 0.08, 0.12), building_height=(10.0, 24.0), block_length=(15.0, 60.0),
        p_block_gap=0.1, p_cross_street=0.35, p_tree_row=0.6, tree_spacing=(8.0, 14.0),
        palm_fraction=0.0, pole_spacing=(12.0, 20.0), vehicle_gap=30.0, truck_fraction=0.05,
        bus_fraction=0.04, p_tram=0.15, persons=7.0, cyclists=1.5, motorcyclists=0.2,
        parked_bicycles=1.5,
    ),
    look=Look(
        materials=_REALISTIC_MATERIALS, brightness=(0.8, 1.0), colour_cast=(1.03, 1.0, 0.88),
        cast_jitter=0.05, saturation=(0.7, 0.9), gamma=(1.05, 1.3), vignette=(0.25, 0.45),
        blur_px=(0.35, 0.7), noise_sigma=(3.0, 6.0), shadow_strength=0.3, shadow_blur_px=3.0,
    ),
)

DOMAIN_STYLES: Mapping[str, DomainStyle] = MappingProxyType(
    {SYNTHETIC.name: SYNTHETIC, REALISTIC.name: REALISTIC}
)


# --------------------------------------------------------------------------- camera and canvas


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


@dataclass(frozen=True)
class _Camera:
    """Pinhole camera at height ``elevation`` above the ground, looking down +Z."""

    width: int
    height: int
    focal: float
    cx: float
    horizon: float
    elevation: float

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = np.maximum(z, _Z_NEAR)
        return self.cx + self.focal * x / z, self.horizon + self.focal * (self.elevation - y) / z

    def points(self, x: object, y: object, z: object) -> Points:
        """Image points of world points (``x, y, z``: scalars or sequences, broadcast)."""
        if any(isinstance(c, np.ndarray) and (c.ndim > 1 or c.size > 16) for c in (x, y, z)):
            xs, ys, zs = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float),
                                             np.asarray(z, float))
            u, v = self.project(xs.ravel(), ys.ravel(), zs.ravel())
            return list(zip(u.tolist(), v.tolist()))
        # Short lists: plain Python is several times faster than numpy here.
        cols = [c.tolist() if isinstance(c, np.ndarray) else list(c) if isinstance(c, tuple) else c
                for c in (x, y, z)]
        n = max(len(c) if isinstance(c, list) else 1 for c in cols)
        xs, ys, zs = (c if isinstance(c, list) else [float(c)] * n for c in cols)
        f, cx, hor, elev = self.focal, self.cx, self.horizon, self.elevation
        out = []
        for xi, yi, zi in zip(xs, ys, zs):
            zi = max(zi, _Z_NEAR)
            out.append((cx + f * xi / zi, hor + f * (elev - yi) / zi))
        return out

    def px(self, metres: float, z: float) -> float:
        """Image size of ``metres`` at depth ``z``."""
        return self.focal * metres / max(z, _Z_NEAR)

    def nearest_visible_depth(self) -> float:
        """Depth of the ground seen at the bottom image row."""
        return self.focal * self.elevation / (self.height - self.horizon)


class _Canvas:
    """An instance map being painted, with the label and colour of every instance.

    Instance 0 is the sky, which fills the canvas at the start. Cast shadows are
    painted into a separate mask; they darken only ground surfaces (road,
    sidewalk, terrain) that remain visible in the final picture.
    """

    def __init__(self, camera: _Camera, materials: Mapping[str, Material],
                 rng: np.random.Generator) -> None:
        size = (camera.width, camera.height)
        self.camera = camera
        self.ids = Image.new("I", size, 0)
        self.shadow = Image.new("L", size, 0)
        self.table: list[tuple[float, ...]] = []  # label, r, g, b, fine, coarse, gradient
        self._materials = materials
        self._rng = rng
        self._draw = ImageDraw.Draw(self.ids)
        self._shadow_draw = ImageDraw.Draw(self.shadow)
        self.part(SKY, "sky")

    def colour(self, material: str) -> np.ndarray:
        """A colour of ``material`` with this instance's random variation."""
        spec = self._materials[material]
        pick = int(self._rng.integers(len(spec.colours)))
        draw = self._rng.standard_normal(4)
        tint = 1.0 + spec.jitter * (draw[0] + 0.4 * draw[1:])
        return np.clip(np.asarray(spec.colours[pick], dtype=float) * tint, 0.0, 255.0)

    def part(self, label: int, material: str, shade: float = 1.0,
             colour: np.ndarray | None = None) -> int:
        """Register a new instance; returns its id for the drawing calls."""
        spec = self._materials[material]
        rgb = np.clip((self.colour(material) if colour is None else colour) * shade, 0.0, 255.0)
        self.table.append((float(label), *rgb.tolist(), spec.fine, spec.coarse, spec.gradient))
        return len(self.table) - 1

    def fill(self, part: int, points: Points) -> None:
        self._draw.polygon(points, fill=part)

    def disc(self, part: int, u: float, v: float, ru: float, rv: float | None = None) -> None:
        rv = ru if rv is None else rv
        self._draw.ellipse([u - ru, v - rv, u + ru, v + rv], fill=part)

    def ring(self, part: int, u: float, v: float, r: float, width: float) -> None:
        self._draw.ellipse([u - r, v - r, u + r, v + r], outline=part, width=max(1, round(width)))

    def stroke(self, part: int, points: Points, width: float) -> None:
        self._draw.line(points, fill=part, width=max(1, round(width)), joint="curve")

    def cast_shadow(self, points: Points) -> None:
        self._shadow_draw.polygon(points, fill=255)


# --------------------------------------------------------------------------- street layout


@dataclass(frozen=True)
class _Street:
    """Cross-section and extent of the street the camera drives along."""

    lane_edges: tuple[float, ...]  # X of the lane boundaries, left to right
    oncoming_lanes: int  # the leftmost lanes carry oncoming traffic
    parking: tuple[bool, bool]  # parking strip along the left / right kerb
    road: tuple[float, float]  # X range of the carriageway, parking strips included
    walk: tuple[float, float]  # sidewalk widths, left / right
    sides: tuple[str, str]  # "buildings", "wall", "fence" or "park"
    end: float  # depth where the street meets a cross street or, if open, fades out
    cross_width: float  # width of the cross street (0: none)
    tram_lane: int | None

    def kerb(self, side: int) -> float:
        """X of the kerb on side -1 (left) or +1 (right)."""
        return self.road[0] if side < 0 else self.road[1]

    def outer_edge(self, side: int) -> float:
        """X of the far edge of the sidewalk on side -1 or +1."""
        return self.kerb(side) + side * self.walk[side > 0]


_PARKING_WIDTH = 2.2
_CAR_LENGTH = (3.9, 4.8)
Painter = Callable[[], None]  # draws one object when called
_ROADSIDES = ("buildings", "wall", "fence", "park")


def _sample_street(layout: Layout, rng: np.random.Generator) -> _Street:
    lanes = int(rng.integers(layout.lanes[0], layout.lanes[1] + 1))
    width = _uniform(rng, layout.lane_width)
    oncoming = lanes // 2
    own_lane = int(rng.integers(oncoming, lanes))
    edges = (np.arange(lanes + 1) - own_lane - 0.5) * width + rng.normal(0.0, 0.2)
    parking = (bool(rng.random() < layout.p_parking), bool(rng.random() < layout.p_parking))
    road = (float(edges[0]) - _PARKING_WIDTH * parking[0], float(edges[-1]) + _PARKING_WIDTH * parking[1])
    walk = (_uniform(rng, layout.sidewalk_width), _uniform(rng, layout.sidewalk_width))
    weights = np.asarray(layout.roadside) / np.sum(layout.roadside)
    left, right = (_ROADSIDES[i] for i in rng.choice(len(_ROADSIDES), size=2, p=weights))
    cross = rng.random() < layout.p_cross_street
    end = _uniform(rng, (35.0, 110.0)) if cross else _uniform(rng, (150.0, 250.0))
    tram = int(rng.integers(lanes)) if rng.random() < layout.p_tram else None
    return _Street(tuple(edges.tolist()), oncoming, parking, road, walk, (left, right), end,
                   _uniform(rng, (10.0, 16.0)) if cross else 0.0, tram)


@dataclass(frozen=True)
class _Block:
    """A building block: a facade along the street (or across it) of one height."""

    side: int  # -1 / +1: along the left / right of the street; 0: across its end
    plane: float  # X of a side facade, Z of a facade across the street
    start: float  # extent along the facade (Z for side facades, X across the street)
    stop: float
    height: float


def _sample_blocks(layout: Layout, street: _Street, rng: np.random.Generator) -> list[_Block]:
    blocks: list[_Block] = []
    lo, hi = layout.building_height
    for side in (-1, 1):
        kind = street.sides[side > 0]
        if kind == "buildings":
            plane = street.outer_edge(side) + side * _uniform(rng, (0.0, 0.8))
        elif rng.random() < 0.6:  # set-back buildings behind a wall, fence or park
            plane = street.outer_edge(side) + side * _uniform(rng, (8.0, 30.0))
        else:
            continue
        z = _Z_NEAR
        stop_at = street.end if street.cross_width else 220.0
        while z < stop_at:
            length = _uniform(rng, layout.block_length)
            height = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            blocks.append(_Block(side, plane, z, min(z + length, stop_at), height))
            z += length
            if rng.random() < layout.p_block_gap:
                z += _uniform(rng, (4.0, 14.0))
    if street.cross_width:
        plane = street.end + street.cross_width + 4.0
        x = -150.0
        while x < 150.0:
            length = _uniform(rng, layout.block_length)
            height = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            blocks.append(_Block(0, plane, x, x + length, height))
            x += length
    return blocks


# --------------------------------------------------------------------------- ground


def _ground_quad(cam: _Camera, x0: float, x1: float, z0: float, z1: float) -> Points:
    return cam.points([x0, x1, x1, x0], 0.0, [z0, z0, z1, z1])


def _draw_ground(cv: _Canvas, street: _Street, rng: np.random.Generator) -> None:
    cam = cv.camera
    end = street.end
    cv.fill(cv.part(TERRAIN, "terrain"), _ground_quad(cam, -_FAR, _FAR, _Z_NEAR, _FAR))
    road_end = end if street.cross_width else _FAR
    cv.fill(cv.part(ROAD, "road"), _ground_quad(cam, *street.road, _Z_NEAR, road_end))
    for side in (-1, 1):
        kerb, outer = street.kerb(side), street.outer_edge(side)
        cv.fill(cv.part(SIDEWALK, "sidewalk"), _ground_quad(cam, min(kerb, outer), max(kerb, outer),
                                                              _Z_NEAR, road_end))
        kerb_in = kerb + side * 0.25
        cv.fill(cv.part(SIDEWALK, "kerb"), _ground_quad(cam, min(kerb, kerb_in), max(kerb, kerb_in),
                                                          _Z_NEAR, road_end))
    if street.cross_width:
        far = end + street.cross_width
        cv.fill(cv.part(ROAD, "road"), _ground_quad(cam, -_FAR, _FAR, end, far))
        cv.fill(cv.part(SIDEWALK, "sidewalk"), _ground_quad(cam, -_FAR, _FAR, far, far + 4.0))
    _draw_markings(cv, street, road_end, rng)


def _dashes(cam: _Camera, x: float, width: float, z0: float, z1: float, dash: float,
            gap: float, phase: float) -> list[Points]:
    starts = np.arange(z0 + phase, z1, dash + gap)
    quads = []
    for s in starts.tolist():
        quads.append(_ground_quad(cam, x - width / 2, x + width / 2, s, min(s + dash, z1)))
    return quads


def _draw_markings(cv: _Canvas, street: _Street, road_end: float, rng: np.random.Generator) -> None:
    cam = cv.camera
    paint = cv.part(ROAD, "marking")
    edges = street.lane_edges
    z_stop = min(road_end, 160.0)
    for i in range(1, len(edges) - 1):
        centre = i == street.oncoming_lanes
        solid = centre and rng.random() < 0.5
        dash, gap = (z_stop, 1.0) if solid else (3.0, 6.0)
        for quad in _dashes(cam, edges[i], 0.15, _Z_NEAR, z_stop, dash, gap, float(rng.uniform(0, 6))):
            cv.fill(paint, quad)
    for x in (edges[0], edges[-1]):
        if rng.random() < 0.6:
            cv.fill(paint, _ground_quad(cam, x - 0.07, x + 0.07, _Z_NEAR, z_stop))
    if street.tram_lane is not None:
        rail = cv.part(ROAD, "rail")
        centre = (edges[street.tram_lane] + edges[street.tram_lane + 1]) / 2
        for x in (centre - 0.72, centre + 0.72):
            cv.fill(rail, _ground_quad(cam, x - 0.04, x + 0.04, _Z_NEAR, z_stop))
    if street.cross_width or rng.random() < 0.3:  # zebra crossing
        z = street.end - 4.0 if street.cross_width else _uniform(rng, (12.0, 40.0))
        for x in np.arange(street.road[0] + 0.3, street.road[1] - 0.5, 1.0).tolist():
            cv.fill(paint, _ground_quad(cam, x, x + 0.5, z, z + 3.0))


def _draw_building_shadows(cv: _Canvas, blocks: Sequence[_Block], rng: np.random.Generator) -> None:
    """Sunlight from one side: the blocks there shade part of the street."""
    sun_side = -1 if rng.random() < 0.5 else 1
    reach, shear = _uniform(rng, (0.2, 0.7)), _uniform(rng, (-0.3, 0.3))
    for b in blocks:
        if b.side != sun_side:
            continue
        x_far = b.plane - b.side * b.height * reach
        cv.cast_shadow(cv.camera.points([b.plane, b.plane, x_far, x_far], 0.0,
                                        [b.start, b.stop, b.stop + b.height * shear,
                                         b.start + b.height * shear]))


# --------------------------------------------------------------------------- buildings


def _plane_points(cam: _Camera, block: _Block, s: np.ndarray, y: np.ndarray,
                  offset: float = 0.0) -> Points:
    """Image points of facade coordinates (along-facade ``s``, height ``y``)."""
    if block.side == 0:
        return cam.points(s, y, block.plane - offset)
    return cam.points(block.plane - block.side * offset, y, s)


def _draw_block(cv: _Canvas, block: _Block, rng: np.random.Generator) -> None:
    cam = cv.camera
    colour = cv.colour("facade")
    h, s0, s1 = block.height, block.start, block.stop
    if block.side != 0 and s0 > _Z_NEAR + 0.1:  # the end wall facing the camera
        back = block.plane + block.side * 14.0
        end_wall = _Block(0, s0, min(block.plane, back), max(block.plane, back), h)
        cv.fill(cv.part(BUILDING, "facade", shade=0.8, colour=colour),
                cam.points([block.plane, back, back, block.plane], [0.0, 0.0, h, h], s0))
        _draw_windows(cv, end_wall, rng, shade=0.8)
    cv.fill(cv.part(BUILDING, "facade", colour=colour),
            _plane_points(cam, block, np.array([s0, s1, s1, s0]), np.array([0.0, 0.0, h, h])))
    cornice = cv.part(BUILDING, "cornice")
    cv.fill(cornice, _plane_points(cam, block, np.array([s0, s1, s1, s0]),
                                   np.array([h - 0.5, h - 0.5, h, h]), offset=0.05))
    _draw_windows(cv, block, rng)


def _draw_windows(cv: _Canvas, block: _Block, rng: np.random.Generator, shade: float = 1.0) -> None:
    """A grid of windows (and shop fronts on the ground floor) on one facade."""
    cam = cv.camera
    s0, s1 = block.start, block.stop
    floor = _uniform(rng, (3.0, 3.6))
    win_w, win_h = _uniform(rng, (1.0, 1.6)), _uniform(rng, (1.3, 1.8))
    pitch = win_w + _uniform(rng, (1.2, 2.2))
    ground = _uniform(rng, (3.0, 4.0))
    rows = np.arange(ground + 0.8, block.height - win_h - 0.8, floor)
    cols = np.arange(s0 + 1.0, s1 - win_w - 0.5, pitch)
    if rows.size == 0 or cols.size == 0:
        return
    parts = [cv.part(BUILDING, "window", shade=shade) for _ in range(2)]
    choice = rng.integers(0, 2, size=(rows.size, cols.size))
    ss, yy = np.meshgrid(cols, rows)
    corner_s = np.stack([ss, ss + win_w, ss + win_w, ss], axis=-1)
    corner_y = np.stack([yy, yy, yy + win_h, yy + win_h], axis=-1)
    pts = np.asarray(_plane_points(cam, block, corner_s, corner_y, offset=0.02))
    pts = pts.reshape(rows.size, cols.size, 4, 2)
    inside = (pts[..., 0].max(-1) > -1) & (pts[..., 0].min(-1) < cam.width + 1) & (
        np.abs(pts[..., 1, 1] - pts[..., 2, 1]) >= 1.0)
    for r, c in zip(*np.nonzero(inside)):
        cv.fill(parts[choice[r, c]], [tuple(p) for p in pts[r, c].tolist()])
    if rng.random() < 0.6:  # shop fronts on the ground floor
        shop = cv.part(BUILDING, "shop", shade=shade)
        for s in np.arange(s0 + 0.8, s1 - 3.0, _uniform(rng, (4.0, 7.0))).tolist():
            cv.fill(shop, _plane_points(cam, block, np.array([s, s + 3.0, s + 3.0, s]),
                                        np.array([0.3, 0.3, 2.6, 2.6]), offset=0.02))


def _draw_skyline(cv: _Canvas, layout: Layout, rng: np.random.Generator) -> None:
    """Distant buildings and tree lines on the horizon."""
    cam = cv.camera
    z = _FAR * 0.8
    x = -_FAR
    lo, hi = layout.building_height
    while x < _FAR:
        width = _uniform(rng, (15.0, 45.0))
        kind = rng.random()
        if kind < 0.55:
            h = _uniform(rng, (lo, hi * 0.8))
            cv.fill(cv.part(BUILDING, "distant"), cam.points([x, x + width, x + width, x], [0, 0, h, h], z))
        elif kind < 0.8:
            xs = np.linspace(x, x + width, 8)
            tops = rng.uniform(6.0, 14.0, size=8)
            pts = cam.points(xs, tops, z) + cam.points(xs[::-1], 0.0, z)
            cv.fill(cv.part(VEGETATION, "foliage", shade=0.8), pts)
        x += width


# --------------------------------------------------------------------------- roadside structures


def _draw_wall(cv: _Canvas, x: float, z0: float, z1: float, rng: np.random.Generator) -> None:
    h = _uniform(rng, (0.8, 2.4))
    cv.fill(cv.part(WALL, "wall"), cv.camera.points(x, [0.0, 0.0, h, h], [z0, z1, z1, z0]))
    cv.fill(cv.part(WALL, "wall", shade=0.85), cv.camera.points(x, [h - 0.15, h - 0.15, h, h],
                                                                  [z0, z1, z1, z0]))


def _draw_fence(cv: _Canvas, x: float, side: int, z0: float, z1: float,
                rng: np.random.Generator) -> None:
    cam = cv.camera
    h = _uniform(rng, (1.0, 2.0))
    cv.fill(cv.part(FENCE, "fence_mesh"), cam.points(x, [0.05, 0.05, h, h], [z0, z1, z1, z0]))
    post = cv.part(FENCE, "fence_post")
    spacing = _uniform(rng, (1.5, 3.0))
    for z in np.arange(z0, z1, spacing).tolist():
        cv.stroke(post, cam.points(x - side * 0.03, [0.0, h + 0.05], z), cam.px(0.08, z))
    for y in (h, h * 0.5):
        cv.stroke(post, cam.points(x - side * 0.03, y, [max(z0, _Z_NEAR + 0.5), z1]), 1.0)


def _draw_hedge(cv: _Canvas, x: float, z0: float, z1: float, rng: np.random.Generator,
                height: tuple[float, float] = (0.7, 1.6)) -> None:
    n = max(4, int((z1 - z0) / 1.5))
    zs = np.linspace(z0, z1, n)
    tops = _uniform(rng, height) + rng.normal(0.0, 0.12, size=n)
    pts = cv.camera.points(x, 0.0, zs) + cv.camera.points(x, tops[::-1], zs[::-1])
    cv.fill(cv.part(VEGETATION, "foliage"), pts)


def _edge_structures(cv: _Canvas, street: _Street, rng: np.random.Generator) -> list[Painter]:
    """Walls, fences and hedges along the outer sidewalk edges (drawn after the buildings)."""
    out: list[Painter] = []
    stop = street.end if street.cross_width else 200.0
    for side in (-1, 1):
        kind = street.sides[side > 0]
        x = street.outer_edge(side)
        if kind == "wall":
            out.append(partial(_draw_wall, cv, x, _Z_NEAR, stop, rng))
        elif kind == "fence":
            out.append(partial(_draw_fence, cv, x, side, _Z_NEAR, stop, rng))
        elif kind == "park" and rng.random() < 0.6:
            z0 = _uniform(rng, (_Z_NEAR, 20.0))
            out.append(partial(_draw_hedge, cv, x + side * 0.5, z0, z0 + _uniform(rng, (10.0, 60.0)), rng))
        elif kind == "buildings" and rng.random() < 0.15:
            z0 = _uniform(rng, (_Z_NEAR, 30.0))
            out.append(partial(_draw_hedge, cv, x - side * 0.5, z0, z0 + _uniform(rng, (5.0, 25.0)), rng,
                               (0.5, 1.0)))
    return out


# --------------------------------------------------------------------------- vegetation


def _draw_tree(cv: _Canvas, x: float, z: float, rng: np.random.Generator, pit: bool) -> None:
    cam = cv.camera
    if pit:
        cv.fill(cv.part(TERRAIN, "terrain", shade=0.8), _ground_quad(cam, x - 0.6, x + 0.6, z - 0.6, z + 0.6))
    trunk_h, radius = _uniform(rng, (1.8, 3.5)), _uniform(rng, (1.4, 3.0))
    trunk = cv.part(VEGETATION, "trunk")
    cv.stroke(trunk, cam.points(x, [0.0, trunk_h + radius * 0.5], z), cam.px(0.25, z))
    leaves = [cv.part(VEGETATION, "foliage", shade=s) for s in (0.85, 1.0)]
    for i in range(int(rng.integers(4, 8))):
        r = radius * _uniform(rng, (0.45, 0.75))
        cx = x + rng.normal(0.0, radius * 0.35)
        cy = trunk_h + radius * _uniform(rng, (0.5, 1.3))
        (u, v), = cam.points(cx, cy, z)
        cv.disc(leaves[i % 2], u, v, cam.px(r, z) * _uniform(rng, (0.9, 1.2)), cam.px(r, z))


def _draw_palm(cv: _Canvas, x: float, z: float, rng: np.random.Generator) -> None:
    cam = cv.camera
    h = _uniform(rng, (6.0, 11.0))
    lean = rng.normal(0.0, 0.4)
    ys = np.linspace(0.0, h, 6)
    xs = x + lean * (ys / h) ** 2
    cv.stroke(cv.part(VEGETATION, "trunk"), cam.points(xs, ys, z), cam.px(0.3, z))
    leaf = cv.part(VEGETATION, "foliage")
    top_x, top_y = float(xs[-1]), h
    for angle in np.linspace(0, 2 * np.pi, int(rng.integers(7, 11)), endpoint=False) + rng.uniform(0, 1):
        length = _uniform(rng, (2.0, 3.2))
        dx = np.cos(angle) * length
        droop = -abs(np.sin(angle)) * 0.4 * length - 0.6 * length * (abs(np.cos(angle)) > 0.5)
        tip = (top_x + dx, top_y + droop + 0.3)
        mid = (top_x + dx * 0.5, top_y + 0.45)
        pts = cam.points([top_x, mid[0], tip[0], mid[0]], [top_y, mid[1] + 0.25, tip[1], mid[1] - 0.2], z)
        cv.fill(leaf, pts)


def _draw_bush(cv: _Canvas, x: float, z: float, rng: np.random.Generator) -> None:
    cam = cv.camera
    w, h = _uniform(rng, (0.8, 2.5)), _uniform(rng, (0.6, 1.5))
    (u, v), = cam.points(x, h / 2, z)
    cv.disc(cv.part(VEGETATION, "foliage"), u, v, cam.px(w / 2, z), cam.px(h / 2, z))


# --------------------------------------------------------------------------- street furniture


def _draw_pole(cv: _Canvas, x: float, z: float, side: int, rng: np.random.Generator) -> None:
    """A street lamp, a traffic-light pole, a sign post or a bare pole."""
    cam = cv.camera
    pole = cv.part(POLE, "pole")
    kind = rng.choice(4, p=[0.3, 0.25, 0.35, 0.1])
    height = {0: (6.0, 9.0), 1: (3.2, 5.0), 2: (2.4, 3.4), 3: (3.0, 7.0)}[int(kind)]
    h = _uniform(rng, height)
    cv.stroke(pole, cam.points(x, [0.0, h], z), cam.px(0.14, z))
    if kind == 0:  # street lamp with an arm over the road
        arm = _uniform(rng, (1.0, 2.5))
        tip = x - side * arm
        cv.stroke(pole, cam.points([x, x - side * arm * 0.6, tip], [h, h + 0.3, h + 0.25], z),
                  cam.px(0.09, z))
        (u, v), = cam.points(tip, h + 0.1, z)
        cv.disc(cv.part(POLE, "lamp_head"), u, v, cam.px(0.35, z), cam.px(0.12, z))
    elif kind == 1:  # traffic light, sometimes a second one on an arm over the road
        _draw_traffic_light(cv, x, h - 1.0, z - 0.15, rng)
        if rng.random() < 0.4:
            tip = x - side * _uniform(rng, (2.5, 5.0))
            cv.stroke(pole, cam.points([x, tip], h - 0.1, z), cam.px(0.1, z))
            _draw_traffic_light(cv, tip, h - 1.2, z - 0.15, rng)
    elif kind == 2:  # traffic signs
        y = h
        for _ in range(int(rng.integers(1, 3))):
            size = _draw_sign(cv, x, y, z - 0.05, rng)
            y -= size + 0.1


def _draw_traffic_light(cv: _Canvas, x: float, y: float, z: float, rng: np.random.Generator) -> None:
    cam = cv.camera
    box = cv.part(TRAFFIC_LIGHT, "light_box")
    cv.fill(box, cam.points([x - 0.17, x + 0.17, x + 0.17, x - 0.17], [y, y, y + 1.0, y + 1.0], z))
    if rng.random() < 0.25:  # seen from behind: no lamps
        return
    lit = int(rng.integers(3))
    r = cam.px(0.1, z)
    for i, name in enumerate(("lamp_green", "lamp_amber", "lamp_red")):
        (u, v), = cam.points(x, y + 0.18 + 0.32 * i, z - 0.01)
        cv.disc(cv.part(TRAFFIC_LIGHT, name if i == lit else "lamp_off"), u, v, r)


def _upright_rect(cam: _Camera, x: float, y: float, width: float, height: float, z: float) -> Points:
    """A rectangle facing the camera, centred on ``(x, y)`` at depth ``z``."""
    x0, x1, y0, y1 = x - width / 2, x + width / 2, y - height / 2, y + height / 2
    return cam.points([x0, x1, x1, x0], [y0, y0, y1, y1], z)


def _draw_sign(cv: _Canvas, x: float, top: float, z: float, rng: np.random.Generator) -> float:
    """One sign hanging from ``top``; returns its height."""
    cam = cv.camera
    shape = int(rng.integers(5))
    size = _uniform(rng, (0.5, 0.75))
    cy = top - size / 2
    (u, v), = cam.points(x, cy, z)
    r = cam.px(size / 2, z)
    if rng.random() < 0.2:  # back of a sign
        cv.fill(cv.part(TRAFFIC_SIGN, "sign_back"), _upright_rect(cam, x, cy, size, size, z))
        return size
    if shape == 0:  # prohibitory: red ring, white centre
        cv.disc(cv.part(TRAFFIC_SIGN, "sign_red"), u, v, r)
        cv.disc(cv.part(TRAFFIC_SIGN, "sign_white"), u, v, r * 0.72)
    elif shape == 1:  # mandatory: blue disc
        cv.disc(cv.part(TRAFFIC_SIGN, "sign_blue"), u, v, r)
        cv.stroke(cv.part(TRAFFIC_SIGN, "sign_white"), [(u - r * 0.5, v), (u + r * 0.5, v)], r * 0.25)
    elif shape == 2:  # warning: red triangle
        tri = [(u, v - r), (u + r, v + r * 0.8), (u - r, v + r * 0.8)]
        cv.fill(cv.part(TRAFFIC_SIGN, "sign_red"), tri)
        cv.fill(cv.part(TRAFFIC_SIGN, "sign_white"),
                [(u, v - r * 0.45), (u + r * 0.55, v + r * 0.5), (u - r * 0.55, v + r * 0.5)])
    elif shape == 3:  # priority: yellow diamond
        cv.fill(cv.part(TRAFFIC_SIGN, "sign_white"), [(u, v - r), (u + r, v), (u, v + r), (u - r, v)])
        cv.fill(cv.part(TRAFFIC_SIGN, "sign_yellow"),
                [(u, v - r * 0.7), (u + r * 0.7, v), (u, v + r * 0.7), (u - r * 0.7, v)])
    else:  # information: blue or green rectangle
        colour = "sign_blue" if rng.random() < 0.5 else "sign_green"
        cv.fill(cv.part(TRAFFIC_SIGN, colour),
                _upright_rect(cam, x, cy, size * _uniform(rng, (1.0, 2.0)), size, z))
    return size


# --------------------------------------------------------------------------- people


def _draw_person(cv: _Canvas, x: float, z: float, rng: np.random.Generator, view: str) -> None:
    """A pedestrian seen from the front/back (``view="front"``) or walking across (``"side"``)."""
    cam = cv.camera
    h = _uniform(rng, (1.55, 1.95))
    px = cam.px(1.0, z)
    skin, hair = cv.part(PERSON, "skin"), cv.part(PERSON, "hair")
    legs, top = cv.part(PERSON, "clothes"), cv.part(PERSON, "clothes")
    hip, shoulder = 0.5 * h, 0.82 * h
    if view == "front":
        spread = _uniform(rng, (0.0, 0.12))
        for s in (-1, 1):
            cv.stroke(legs, cam.points([x + s * 0.09, x + s * (0.09 + spread)], [hip, 0.03], z), 0.14 * px)
            cv.stroke(top, cam.points([x + s * 0.21, x + s * 0.27], [shoulder - 0.05, hip + 0.05], z), 0.1 * px)
        torso_x = [x - 0.2, x + 0.2, x + 0.17, x - 0.17]
    else:
        stride = _uniform(rng, (0.15, 0.4))
        for s in (-1, 1):
            cv.stroke(legs, cam.points([x, x + s * stride * 0.6, x + s * stride], [hip, hip * 0.5, 0.03], z),
                      0.14 * px)
            cv.stroke(top, cam.points([x, x - s * stride * 0.5], [shoulder - 0.05, hip + 0.05], z), 0.1 * px)
        torso_x = [x - 0.12, x + 0.12, x + 0.11, x - 0.11]
    cv.fill(top, cam.points(torso_x, [shoulder, shoulder, hip - 0.02, hip - 0.02], z))
    head_v = cam.points(x, 0.93 * h, z)[0]
    cv.disc(skin, head_v[0], head_v[1], 0.09 * px, 0.11 * px)
    cv.disc(hair, head_v[0], head_v[1] - 0.05 * px, 0.09 * px, 0.065 * px)


def _draw_rider_back(cv: _Canvas, x: float, z: float, rng: np.random.Generator, motor: bool,
                     facing_camera: bool) -> None:
    """A cyclist or motorcyclist riding along the street, seen from behind or ahead."""
    cam = cv.camera
    px = cam.px(1.0, z)
    label = MOTORCYCLE if motor else BICYCLE
    frame = cv.part(label, "moto_body" if motor else "bike_frame")
    tyre = cv.part(label, "tyre")
    wheel_w = 0.14 if motor else 0.05
    cv.fill(tyre, cam.points([x - wheel_w, x + wheel_w, x + wheel_w, x - wheel_w], [0, 0, 0.68, 0.68], z))
    if motor:
        cv.fill(frame, cam.points([x - 0.28, x + 0.28, x + 0.24, x - 0.24], [0.35, 0.35, 0.85, 0.85], z - 0.05))
        light = "head_light" if facing_camera else "tail_light"
        cv.fill(cv.part(label, light), cam.points([x - 0.08, x + 0.08, x + 0.08, x - 0.08],
                                                   [0.7, 0.7, 0.8, 0.8], z - 0.1))
    cv.stroke(frame, cam.points([x - 0.33, x + 0.33], 1.05, z + 0.3), 0.05 * px)
    hip, shoulder = (0.85, 1.4) if motor else (0.95, 1.48)
    legs, top = cv.part(RIDER, "clothes"), cv.part(RIDER, "clothes")
    for s in (-1, 1):
        cv.stroke(legs, cam.points([x + s * 0.12, x + s * 0.2, x + s * 0.14], [hip, hip - 0.3, 0.3], z - 0.1),
                  0.14 * px)
        cv.stroke(top, cam.points([x + s * 0.2, x + s * 0.33], [shoulder - 0.05, 1.05], z - 0.05), 0.09 * px)
    cv.fill(top, cam.points([x - 0.2, x + 0.2, x + 0.17, x - 0.17], [shoulder, shoulder, hip, hip], z - 0.15))
    (u, v), = cam.points(x, shoulder + 0.17, z - 0.15)
    head = cv.part(RIDER, "clothes" if motor else "hair")  # a helmet or hair
    cv.disc(head, u, v, (0.13 if motor else 0.1) * px, (0.14 if motor else 0.11) * px)


def _draw_bike_side(cv: _Canvas, x: float, z: float, rng: np.random.Generator, motor: bool,
                    ridden: bool) -> None:
    """A bicycle or motorcycle seen from the side (crossing, or parked across the kerb)."""
    cam = cv.camera
    px = cam.px(1.0, z)
    d = 1.0 if rng.random() < 0.5 else -1.0
    label = MOTORCYCLE if motor else BICYCLE
    frame = cv.part(label, "moto_body" if motor else "bike_frame")
    tyre = cv.part(label, "tyre")
    r, half = (0.31, 0.7) if motor else (0.34, 0.52)
    back, front = x - d * half, x + d * half
    for wx in (back, front):
        (u, v), = cam.points(wx, r, z)
        if motor:
            cv.disc(tyre, u, v, r * px)
        else:
            cv.ring(tyre, u, v, r * px, 0.05 * px)
    seat = (x - d * 0.18, 0.9 if not motor else 0.85)
    bar = (x + d * 0.42, 1.02)
    crank = (x, 0.32)
    if motor:
        body = [(back + d * 0.15, 0.55), (x - d * 0.35, 0.85), (x + d * 0.25, 0.9), (front - d * 0.15, 0.75),
                (x + d * 0.2, 0.32), (x - d * 0.3, 0.35)]
        cv.fill(frame, cam.points([p[0] for p in body], [p[1] for p in body], z))
        cv.stroke(frame, cam.points([front, bar[0]], [r, bar[1]], z), 0.06 * px)
    else:
        path = [(back, r), crank, seat, (back, r), seat, bar, (front, r), bar, crank]
        cv.stroke(frame, cam.points([p[0] for p in path], [p[1] for p in path], z), 0.04 * px)
    if not ridden:
        return
    legs, top = cv.part(RIDER, "clothes"), cv.part(RIDER, "clothes")
    hip = (seat[0], seat[1] + 0.05)
    shoulder = (x + d * (0.05 if motor else 0.1), 1.5 if not motor else 1.42)
    knee = (x + d * 0.2, 0.62)
    cv.stroke(legs, cam.points([hip[0], knee[0], crank[0] + d * 0.05], [hip[1], knee[1], crank[1]], z - 0.1),
              0.15 * px)
    cv.stroke(top, cam.points([hip[0], shoulder[0]], [hip[1] + 0.1, shoulder[1]], z - 0.05), 0.3 * px)
    cv.stroke(top, cam.points([shoulder[0], bar[0]], [shoulder[1] - 0.05, bar[1]], z - 0.05), 0.09 * px)
    (u, v), = cam.points(shoulder[0] + d * 0.07, shoulder[1] + 0.17, z - 0.05)
    cv.disc(cv.part(RIDER, "clothes" if motor else "skin"), u, v, (0.13 if motor else 0.1) * px)


# --------------------------------------------------------------------------- vehicles


def _box(cv: _Canvas, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float,
         front: int, side: int, top: int | None = None) -> None:
    """The visible faces of an axis-aligned box (near face at ``z0``)."""
    cam = cv.camera
    zs = [z0, z1, z1, z0]
    if x0 > 0:
        cv.fill(side, cam.points(x0, [y0, y0, y1, y1], zs))
    elif x1 < 0:
        cv.fill(side, cam.points(x1, [y0, y0, y1, y1], zs))
    if top is not None and y1 < cam.elevation:
        cv.fill(top, cam.points([x0, x1, x1, x0], y1, [z0, z0, z1, z1]))
    cv.fill(front, cam.points([x0, x1, x1, x0], [y0, y0, y1, y1], z0))


def _side_plane(x0: float, x1: float) -> float | None:
    """X of the side face the camera sees, if any."""
    return x0 if x0 > 0 else x1 if x1 < 0 else None


def _draw_wheels(cv: _Canvas, part: int, x0: float, x1: float, zs: Sequence[float], r: float,
                 inset: float) -> None:
    cam = cv.camera
    plane = _side_plane(x0, x1)
    if plane is not None:
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        for zc in zs:
            cv.fill(part, cam.points(plane, r + r * np.sin(angles), zc + r * np.cos(angles)))
    z_axle = zs[0]
    for xa, xb in ((x0 + inset, x0 + inset + 0.28), (x1 - inset - 0.28, x1 - inset)):
        cv.fill(part, cam.points([xa, xb, xb, xa], [0.0, 0.0, 2 * r * 0.8, 2 * r * 0.8], z_axle))


def _vehicle_shadow(cv: _Canvas, x0: float, x1: float, z0: float, z1: float) -> None:
    cv.cast_shadow(_ground_quad(cv.camera, x0 - 0.15, x1 + 0.15, z0 - 0.25, z1))


def _draw_car(cv: _Canvas, x: float, z: float, length: float, rng: np.random.Generator,
              facing_camera: bool) -> None:
    w = _uniform(rng, (1.7, 1.9))
    body_top = _uniform(rng, (0.85, 1.0))
    roof = body_top + _uniform(rng, (0.42, 0.55))
    x0, x1 = x - w / 2, x + w / 2
    z1 = z + length
    _vehicle_shadow(cv, x0, x1, z, z1)
    colour = cv.colour("car_paint")
    paint = [cv.part(CAR, "car_paint", shade=s, colour=colour) for s in (1.0, 0.85, 1.12)]
    _draw_wheels(cv, cv.part(CAR, "tyre"), x0, x1, [z + 0.8, z1 - 0.8], 0.32, 0.08)
    _box(cv, x0, x1, 0.3, body_top, z, z1, *paint)
    near_overhang, far_overhang = (1.3, 0.9) if facing_camera else (0.9, 1.3)
    cz0, cz1 = z + near_overhang, z1 - far_overhang
    cx0, cx1 = x0 + 0.12, x1 - 0.12
    _box(cv, cx0, cx1, body_top, roof, cz0, cz1, *paint)
    glass = cv.part(CAR, "glass")
    _box_glass(cv, glass, cx0, cx1, body_top + 0.05, roof - 0.07, cz0, cz1, 0.12)
    cam = cv.camera
    lamp = cv.part(CAR, "head_light" if facing_camera else "tail_light")
    for xa in (x0 + 0.1, x1 - 0.35):
        cv.fill(lamp, cam.points([xa, xa + 0.25, xa + 0.25, xa], [body_top - 0.28] * 2 + [body_top - 0.12] * 2,
                                 z - 0.01))
    cv.fill(cv.part(CAR, "plate"), cam.points([x - 0.26, x + 0.26, x + 0.26, x - 0.26],
                                               [0.42, 0.42, 0.54, 0.54], z - 0.01))


def _box_glass(cv: _Canvas, glass: int, x0: float, x1: float, y0: float, y1: float, z0: float,
               z1: float, inset: float) -> None:
    """Windows on the visible near and side faces of a cabin box."""
    cam = cv.camera
    cv.fill(glass, cam.points([x0 + inset, x1 - inset, x1 - inset, x0 + inset], [y0, y0, y1, y1], z0 - 0.01))
    plane = _side_plane(x0, x1)
    if plane is not None:
        mid = (z0 + z1) / 2
        for za, zb in ((z0 + inset, mid - 0.05), (mid + 0.05, z1 - inset)):
            cv.fill(glass, cam.points(plane, [y0, y0, y1, y1], [za, zb, zb, za]))


def _draw_truck(cv: _Canvas, x: float, z: float, length: float, rng: np.random.Generator,
                facing_camera: bool) -> None:
    """A box truck: a cab and a cargo box."""
    cab_len = 2.2
    cargo_len = length - cab_len
    x0, x1 = x - 1.25, x + 1.25
    _vehicle_shadow(cv, x0, x1, z, z + length)
    cargo_colour, cab_colour = cv.colour("truck_paint"), cv.colour("truck_paint")
    cargo = [cv.part(TRUCK, "truck_paint", shade=s, colour=cargo_colour) for s in (1.0, 0.85, 1.1)]
    cab = [cv.part(TRUCK, "truck_paint", shade=s, colour=cab_colour) for s in (1.0, 0.85, 1.1)]
    tyre = cv.part(TRUCK, "tyre")
    height = _uniform(rng, (3.2, 3.8))
    if facing_camera:
        _draw_wheels(cv, tyre, x0, x1, [z + 1.0, z + length - 1.2], 0.48, 0.1)
        _box(cv, x0, x1, 0.9, height, z + cab_len, z + length, *cargo)
        _box(cv, x0 + 0.05, x1 - 0.05, 0.5, 2.9, z, z + cab_len, *cab)
        glass = cv.part(TRUCK, "glass")
        cv.fill(glass, cv.camera.points([x0 + 0.2, x1 - 0.2, x1 - 0.2, x0 + 0.2], [1.7, 1.7, 2.7, 2.7], z - 0.01))
    else:
        _draw_wheels(cv, tyre, x0, x1, [z + 1.2, z + length - 1.0], 0.48, 0.1)
        _box(cv, x0 + 0.05, x1 - 0.05, 0.5, 2.9, z + cargo_len, z + length, *cab)
        _box(cv, x0, x1, 0.9, height, z, z + cargo_len, *cargo)
        chassis = cv.part(TRUCK, "tyre")
        cv.fill(chassis, cv.camera.points([x0 + 0.1, x1 - 0.1, x1 - 0.1, x0 + 0.1], [0.45, 0.45, 0.9, 0.9],
                                          z + 0.05))
    return length


def _draw_long_vehicle(cv: _Canvas, x: float, z: float, length: float, rng: np.random.Generator,
                       facing_camera: bool, tram: bool) -> None:
    """A bus or a tram (label "train", as trams are in Cityscapes)."""
    cam = cv.camera
    label, material = (TRAIN, "tram_paint") if tram else (BUS, "bus_paint")
    half_w = 1.2 if tram else 1.27
    top = _uniform(rng, (3.2, 3.5)) if tram else _uniform(rng, (2.9, 3.2))
    x0, x1 = x - half_w, x + half_w
    _vehicle_shadow(cv, x0, x1, z, z + length)
    colour = cv.colour(material)
    faces = [cv.part(label, material, shade=s, colour=colour) for s in (1.0, 0.85, 1.1)]
    tyre = cv.part(label, "tyre")
    wheel_z = [z + 2.5, z + length - 2.5] if not tram else list(np.arange(z + 2.0, z + length, 8.5).tolist())
    _draw_wheels(cv, tyre, x0, x1, wheel_z, 0.45, 0.1)
    _box(cv, x0, x1, 0.3, top, z, z + length, *faces)
    glass = cv.part(label, "glass")
    win_lo = 1.0 if facing_camera else 1.6
    cv.fill(glass, cam.points([x0 + 0.15, x1 - 0.15, x1 - 0.15, x0 + 0.15], [win_lo, win_lo, top - 0.35, top - 0.35],
                              z - 0.01))
    plane = _side_plane(x0, x1)
    if plane is not None:
        pitch = _uniform(rng, (1.3, 1.8))
        for s in np.arange(z + 0.6, z + length - 1.0, pitch).tolist():
            cv.fill(glass, cam.points(plane, [1.25, 1.25, top - 0.4, top - 0.4], [s, s + pitch - 0.2,
                                                                                   s + pitch - 0.2, s]))
    if tram:  # pantograph
        pole = cv.part(label, "tyre")
        mid = z + length / 2
        cv.stroke(pole, cam.points([x - 0.5, x, x + 0.5], [top, top + 0.9, top], mid), cam.px(0.06, mid))
    else:
        lamp = cv.part(label, "head_light" if facing_camera else "tail_light")
        for xa in (x0 + 0.1, x1 - 0.35):
            cv.fill(lamp, cam.points([xa, xa + 0.25, xa + 0.25, xa], [0.6, 0.6, 0.85, 0.85], z - 0.01))
    return length


# --------------------------------------------------------------------------- object placement


def _place_traffic(cv: _Canvas, layout: Layout, street: _Street, z_min: float,
                   rng: np.random.Generator) -> list[tuple[float, Painter]]:
    out: list[tuple[float, Painter]] = []
    edges = street.lane_edges
    z_max = min(street.end - 2.0, 120.0)
    for lane in range(len(edges) - 1):
        centre = (edges[lane] + edges[lane + 1]) / 2
        oncoming = lane < street.oncoming_lanes
        z = z_min + rng.exponential(layout.vehicle_gap) + (6.0 if abs(centre) < 1.0 else 0.0)
        while z < z_max:
            x = centre + rng.normal(0.0, 0.2)
            kind = rng.random()
            if lane == street.tram_lane and kind < 0.5:
                length = _uniform(rng, (24.0, 32.0))
                painter: Painter = partial(_draw_long_vehicle, cv, x, z, length, rng, oncoming, True)
            elif kind < layout.truck_fraction:
                length = _uniform(rng, (6.7, 10.2))
                painter = partial(_draw_truck, cv, x, z, length, rng, oncoming)
            elif kind < layout.truck_fraction + layout.bus_fraction:
                length = _uniform(rng, (10.5, 13.0))
                painter = partial(_draw_long_vehicle, cv, x, z, length, rng, oncoming, False)
            else:
                length = _uniform(rng, _CAR_LENGTH)
                painter = partial(_draw_car, cv, x, z, length, rng, oncoming)
            out.append((z, painter))
            z += length + 2.0 + rng.exponential(layout.vehicle_gap)
    for side in (-1, 1):  # parked cars
        if not street.parking[side > 0]:
            continue
        x = street.kerb(side) - side * 1.1
        z = z_min - 2.0 + rng.exponential(3.0)
        while z < z_max:
            length = _uniform(rng, _CAR_LENGTH)
            if rng.random() < 0.8:  # else an empty space
                facing = rng.random() < 0.3
                out.append((z, partial(_draw_car, cv, x + rng.normal(0.0, 0.1), z, length, rng, facing)))
            z += length + 0.5 + rng.exponential(2.0)
    return out


def _place_people(cv: _Canvas, layout: Layout, street: _Street, z_min: float,
                  rng: np.random.Generator) -> list[tuple[float, Painter]]:
    out: list[tuple[float, Painter]] = []
    z_max = min(street.end, 70.0)

    def on_sidewalk() -> tuple[float, float]:
        side = -1 if rng.random() < 0.5 else 1
        kerb, width = street.kerb(side), street.walk[side > 0]
        return kerb + side * _uniform(rng, (0.4, max(0.5, width - 0.4))), _uniform(rng, (z_min, z_max))

    for _ in range(int(rng.poisson(layout.persons))):
        if rng.random() < 0.85:
            x, z = on_sidewalk()
            out.append((z, partial(_draw_person, cv, x, z, rng, "front")))
        else:
            x, z = _uniform(rng, street.road), _uniform(rng, (z_min, z_max))
            out.append((z, partial(_draw_person, cv, x, z, rng, "side")))
    edges = street.lane_edges
    for motor, mean in ((False, layout.cyclists), (True, layout.motorcyclists)):
        for _ in range(int(rng.poisson(mean))):
            z = _uniform(rng, (z_min + 2.0, z_max))
            if rng.random() < 0.65:  # riding along the street, near a kerb
                oncoming = rng.random() < 0.3
                x = edges[0] + 0.8 if oncoming else edges[-1] - 0.8
                out.append((z, partial(_draw_rider_back, cv, x, z, rng, motor, oncoming)))
            else:  # crossing
                x = _uniform(rng, street.road)
                out.append((z, partial(_draw_bike_side, cv, x, z, rng, motor, True)))
    for _ in range(int(rng.poisson(layout.parked_bicycles))):
        x, z = on_sidewalk()
        out.append((z, partial(_draw_bike_side, cv, x, z, rng, False, False)))
    return out


def _place_furniture(cv: _Canvas, layout: Layout, street: _Street, z_min: float,
                     rng: np.random.Generator) -> list[tuple[float, Painter]]:
    out: list[tuple[float, Painter]] = []
    z_max = min(street.end - 1.0, 120.0)
    for side in (-1, 1):
        kerb = street.kerb(side)
        z = z_min - 1.0 + rng.uniform(0.0, layout.pole_spacing[1])
        while z < z_max:
            x = kerb + side * 0.5
            out.append((z, partial(_draw_pole, cv, x, z, side, rng)))
            z += _uniform(rng, layout.pole_spacing)
        if rng.random() < layout.p_tree_row:
            width = street.walk[side > 0]
            x = kerb + side * min(1.2, width / 2)
            z = z_min - 2.0 + rng.uniform(0.0, 6.0)
            while z < z_max:
                if rng.random() < layout.palm_fraction:
                    out.append((z, partial(_draw_palm, cv, x, z, rng)))
                else:
                    out.append((z, partial(_draw_tree, cv, x, z, rng, True)))
                z += _uniform(rng, layout.tree_spacing)
    return out


def _place_park(cv: _Canvas, layout: Layout, street: _Street, z_min: float,
                rng: np.random.Generator) -> list[tuple[float, Painter]]:
    """Trees and bushes behind the sidewalk where the street is not lined by buildings."""
    out: list[tuple[float, Painter]] = []
    for side in (-1, 1):
        if street.sides[side > 0] == "buildings":
            continue
        edge = street.outer_edge(side)
        for _ in range(int(rng.poisson(8.0))):
            x = edge + side * _uniform(rng, (1.5, 25.0))
            z = _uniform(rng, (z_min, 120.0))
            if rng.random() < 0.6:
                tree = _draw_palm if rng.random() < layout.palm_fraction else partial(_draw_tree, pit=False)
                out.append((z, partial(tree, cv, x, z, rng)))
            else:
                out.append((z, partial(_draw_bush, cv, x, z, rng)))
    return out


def _paint_far_to_near(items: list[tuple[float, Painter]]) -> None:
    for _, paint in sorted(items, key=lambda item: -item[0]):
        paint()


def _draw_ego_hood(cv: _Canvas, rng: np.random.Generator) -> None:
    cam = cv.camera
    w, h = cam.width, cam.height
    rise = _uniform(rng, (0.1, 0.16)) * h
    xs = np.linspace(-0.02 * w, 1.02 * w, 17)
    t = (xs - w / 2) / (w / 2)
    top = h - rise * (1.0 - 0.45 * t ** 2)
    pts = list(zip(xs.tolist(), top.tolist())) + [(1.02 * w, h + 2.0), (-0.02 * w, h + 2.0)]
    cv.fill(cv.part(EGO_VEHICLE, "hood"), pts)


# --------------------------------------------------------------------------- scene


def _sample_camera(layout: Layout, size: tuple[int, int], rng: np.random.Generator) -> _Camera:
    width, height = size
    hfov = np.deg2rad(_uniform(rng, layout.hfov_deg))
    focal = width / 2 / np.tan(hfov / 2)
    return _Camera(width, height, float(focal), width / 2 + rng.normal(0.0, 0.02 * width),
                   _uniform(rng, layout.horizon) * height, _uniform(rng, layout.camera_height))


def _draw_scene(style: DomainStyle, size: tuple[int, int], rng: np.random.Generator) -> _Canvas:
    """Draw one street scene of ``style`` as an instance map (painter's algorithm)."""
    layout = style.layout
    cam = _sample_camera(layout, size, rng)
    cv = _Canvas(cam, style.look.materials, rng)
    street = _sample_street(layout, rng)
    blocks = _sample_blocks(layout, street, rng)
    z_min = cam.nearest_visible_depth() * (1.15 if layout.ego_hood else 0.95)

    _draw_ground(cv, street, rng)
    _draw_building_shadows(cv, blocks, rng)
    _draw_skyline(cv, layout, rng)
    for block in sorted(blocks, key=lambda b: (b.side != 0, -b.start)):
        _draw_block(cv, block, rng)
    _paint_far_to_near(_place_park(cv, layout, street, z_min, rng))
    for paint in _edge_structures(cv, street, rng):
        paint()
    _paint_far_to_near(_place_traffic(cv, layout, street, z_min, rng)
                       + _place_people(cv, layout, street, z_min, rng)
                       + _place_furniture(cv, layout, street, z_min, rng))
    if layout.ego_hood:
        _draw_ego_hood(cv, rng)
    return cv


# --------------------------------------------------------------------------- rendering


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-scale value noise with features about ``cell`` pixels wide."""
    if cell <= 1.0:
        return rng.standard_normal((height, width), dtype=np.float32)
    gh, gw = int(np.ceil(height / cell)) + 2, int(np.ceil(width / cell)) + 2
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    up = Image.fromarray(grid).resize((int(gw * cell), int(gh * cell)), Image.Resampling.BICUBIC)
    return np.asarray(up, dtype=np.float32)[:height, :width] * 0.8


def _render_image(canvas: _Canvas, look: Look, rng: np.random.Generator) -> np.ndarray:
    """RGB ``uint8 [H, W, 3]`` image of a drawn scene, in the look of a domain."""
    cam = canvas.camera
    h, w = cam.height, cam.width
    scale = w / 256.0
    table = np.asarray(canvas.table, dtype=np.float32)
    ids = np.asarray(canvas.ids)
    rgb = table[ids, 1:4]
    rows = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    factor = 1.0 + table[ids, 6] * rows
    fine, coarse = table[:, 4], table[:, 5]
    if fine.any():
        grain = 0.6 * _smooth_noise(rng, h, w, 1.0) + 0.6 * _smooth_noise(rng, h, w, 2.0 * scale)
        factor += fine[ids] * grain
    if coarse.any():
        patches = 0.7 * _smooth_noise(rng, h, w, 10.0 * scale) + 0.5 * _smooth_noise(rng, h, w, 32.0 * scale)
        factor += coarse[ids] * patches
    shadow_img = canvas.shadow
    if look.shadow_blur_px > 0:
        shadow_img = shadow_img.filter(ImageFilter.GaussianBlur(look.shadow_blur_px * scale))
    on_ground = np.isin(table[:, 0], _SHADOW_RECEIVERS).astype(np.float32)
    shadow = np.asarray(shadow_img, dtype=np.float32) / 255.0 * on_ground[ids]
    factor *= 1.0 - look.shadow_strength * shadow
    cast = np.asarray(look.colour_cast, dtype=np.float32) * (
        1.0 + rng.uniform(-look.cast_jitter, look.cast_jitter, size=3).astype(np.float32))
    rgb = rgb * (factor * _uniform(rng, look.brightness))[..., None] * cast
    grey = rgb.mean(axis=-1, keepdims=True)
    rgb = grey + _uniform(rng, look.saturation) * (rgb - grey)
    rgb = 255.0 * (np.clip(rgb, 0.0, 255.0) / 255.0) ** _uniform(rng, look.gamma)
    vignette = _uniform(rng, look.vignette)
    if vignette > 0:
        yy, xx = np.ogrid[-1.0:1.0:h * 1j, -1.0:1.0:w * 1j]
        rgb *= (1.0 - vignette * (xx ** 2 + yy ** 2) / 2.0).astype(np.float32)[..., None]
    image = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))
    blur = _uniform(rng, look.blur_px) * scale
    if blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    out = np.asarray(image, dtype=np.float32)
    sigma = _uniform(rng, look.noise_sigma)
    if sigma > 0:
        out = out + rng.normal(0.0, sigma, size=out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _label_map(canvas: _Canvas) -> np.ndarray:
    """``uint8 [H, W]`` map of Cityscapes label ids of a drawn scene."""
    labels = np.asarray([row[0] for row in canvas.table], dtype=np.uint8)
    return labels[np.asarray(canvas.ids)]


def render_scene(domain: Domain, size: tuple[int, int],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random scene of ``domain`` at ``size = (width, height)``.

    Returns the RGB image (``uint8 [H, W, 3]``) and its Cityscapes label ids
    (``uint8 [H, W]``); the same generator state gives the same scene.
    """
    if domain not in DOMAIN_STYLES:
        raise ValueError(f"unknown domain {domain!r}; expected one of {sorted(DOMAIN_STYLES)}")
    style = DOMAIN_STYLES[domain]
    canvas = _draw_scene(style, size, rng)
    return _render_image(canvas, style.look, rng), _label_map(canvas)
