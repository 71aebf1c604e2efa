"""Materials: the colour model of each kind of surface, in each domain (one table, the two
domains' palettes side by side)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

RGB = tuple[int, int, int]


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


def _m(*colours: RGB, jitter: float = 0.06, fine: float = 0.0, coarse: float = 0.0,
       gradient: float = 0.0) -> Material:
    return Material(tuple(colours), jitter, fine, coarse, gradient)


# Every surface in both domains, side by side: (synthetic, realistic). One table, so that
# each domain has every material a scene may draw.
_MATERIALS: Mapping[str, tuple[Material, Material]] = {
    "sky": (_m((80, 145, 230), (100, 160, 235), jitter=0.05, gradient=0.45),
            _m((196, 201, 206), (178, 188, 202), (214, 214, 212), jitter=0.05, coarse=0.07, gradient=0.1)),
    "road": (_m((78, 78, 84), (92, 90, 92), (70, 72, 80), jitter=0.05, fine=0.015),
             _m((112, 106, 104), (96, 96, 99), (122, 116, 110), jitter=0.05, fine=0.07, coarse=0.1)),
    "marking": (_m((235, 235, 225), (240, 205, 50), jitter=0.03),
                _m((205, 205, 198), jitter=0.04, fine=0.06, coarse=0.12)),
    "rail": (_m((170, 170, 175)), _m((140, 136, 130), fine=0.05)),
    "sidewalk": (_m((195, 185, 170), (175, 175, 180), (205, 180, 160), jitter=0.05),
                 _m((152, 142, 136), (136, 132, 132), (162, 150, 138), jitter=0.05, fine=0.08, coarse=0.08)),
    "kerb": (_m((220, 215, 205)), _m((168, 162, 156), fine=0.05)),
    "terrain": (_m((120, 180, 55), (150, 175, 75), (185, 160, 105), jitter=0.07),
                _m((104, 116, 60), (122, 112, 80), (94, 106, 55), jitter=0.07, fine=0.16, coarse=0.12)),
    "facade": (_m((205, 170, 125), (228, 218, 195), (175, 100, 80), (135, 150, 170), (235, 200, 150),
                  (205, 205, 210), (160, 175, 150), jitter=0.06),
               _m((168, 156, 145), (152, 136, 120), (188, 176, 160), (132, 116, 106), (176, 166, 140),
                  (142, 142, 142), jitter=0.06, fine=0.05, coarse=0.08)),
    "cornice": (_m((185, 185, 185), (150, 140, 130)), _m((122, 116, 110), fine=0.05)),
    "window": (_m((85, 130, 185), (60, 95, 140), (130, 170, 210), jitter=0.07),
               _m((46, 51, 56), (72, 77, 82), (92, 97, 102), jitter=0.06, fine=0.04)),
    "shop": (_m((40, 60, 85), (75, 95, 120)), _m((36, 40, 45), (56, 60, 60), fine=0.05)),
    "distant": (_m((150, 160, 180), (175, 175, 185), jitter=0.05),
                _m((160, 162, 166), (148, 150, 150), jitter=0.04, fine=0.04)),
    "wall": (_m((195, 190, 175), (165, 155, 140), (205, 165, 130)),
             _m((142, 136, 126), (122, 110, 100), (162, 152, 140), fine=0.08, coarse=0.1)),
    "fence_post": (_m((110, 110, 118), (95, 72, 50)), _m((82, 82, 80), (88, 72, 56), fine=0.05)),
    "fence_mesh": (_m((175, 175, 165), (145, 125, 95)), _m((128, 128, 120), (118, 104, 86), fine=0.12)),
    "pole": (_m((135, 135, 140), (95, 100, 108)), _m((108, 108, 102), (82, 86, 80), fine=0.04)),
    "light_box": (_m((45, 45, 40), (60, 75, 50)), _m((36, 36, 36), (52, 56, 46))),
    "lamp_red": (_m((235, 40, 30), jitter=0.02), _m((200, 60, 45), jitter=0.04)),
    "lamp_amber": (_m((245, 185, 30), jitter=0.02), _m((210, 165, 60), jitter=0.04)),
    "lamp_green": (_m((40, 225, 95), jitter=0.02), _m((70, 190, 120), jitter=0.04)),
    "lamp_off": (_m((40, 40, 40), jitter=0.02), _m((38, 38, 38), jitter=0.03)),
    "lamp_head": (_m((225, 225, 200)), _m((190, 190, 175))),
    "sign_red": (_m((225, 30, 30), jitter=0.03), _m((180, 45, 42), jitter=0.05)),
    "sign_blue": (_m((30, 85, 215), jitter=0.03), _m((42, 72, 150), jitter=0.05)),
    "sign_white": (_m((245, 245, 245), jitter=0.02), _m((212, 212, 206), jitter=0.04)),
    "sign_yellow": (_m((250, 205, 30), jitter=0.03), _m((212, 182, 56), jitter=0.05)),
    "sign_green": (_m((25, 140, 65), jitter=0.03), _m((40, 110, 70), jitter=0.05)),
    "sign_back": (_m((150, 150, 155)), _m((118, 118, 118), fine=0.04)),
    "foliage": (_m((65, 150, 45), (90, 165, 40), (55, 130, 60), jitter=0.07, fine=0.04),
                _m((64, 84, 40), (80, 96, 45), (54, 74, 42), jitter=0.08, fine=0.33, coarse=0.12)),
    "trunk": (_m((115, 85, 50)), _m((76, 66, 52), fine=0.1)),
    "skin": (_m((240, 195, 165), (205, 155, 115), (145, 100, 72), (100, 68, 48), jitter=0.04),
             _m((212, 170, 145), (180, 135, 105), (130, 92, 70), (92, 66, 50), jitter=0.05)),
    "hair": (_m((45, 32, 20), (95, 62, 30), (205, 175, 105), (22, 22, 22)),
             _m((42, 34, 26), (86, 62, 38), (170, 150, 105), (28, 28, 28))),
    "clothes": (_m((205, 40, 40), (40, 85, 205), (240, 240, 240), (30, 30, 34), (245, 205, 40), (60, 165, 85),
                   (155, 60, 165), (90, 90, 95), jitter=0.08),
                _m((42, 42, 48), (72, 72, 78), (92, 62, 52), (42, 52, 82), (152, 142, 132), (122, 34, 34),
                   (200, 200, 194), (96, 104, 74), jitter=0.08, fine=0.05)),
    "car_paint": (_m((205, 30, 30), (30, 60, 195), (240, 240, 240), (25, 25, 30), (190, 190, 198),
                     (245, 205, 30), (40, 145, 70), (235, 120, 30), jitter=0.05),
                  _m((60, 60, 66), (140, 140, 146), (200, 200, 200), (30, 30, 35), (92, 32, 32), (42, 52, 82),
                     (170, 170, 176), jitter=0.05, fine=0.02)),
    "glass": (_m((50, 72, 95), (32, 42, 58)), _m((36, 41, 47), (52, 58, 64))),
    "tyre": (_m((26, 26, 26), jitter=0.02), _m((30, 30, 30), jitter=0.03)),
    "tail_light": (_m((215, 20, 20), jitter=0.03), _m((170, 40, 35), jitter=0.05)),
    "head_light": (_m((250, 250, 225), jitter=0.02), _m((210, 210, 196), jitter=0.04)),
    "plate": (_m((235, 235, 235), jitter=0.02), _m((205, 205, 200), jitter=0.03)),
    "truck_paint": (_m((240, 240, 240), (205, 40, 40), (40, 85, 165), (235, 150, 40)),
                    _m((200, 200, 200), (122, 42, 42), (70, 86, 110))),
    "bus_paint": (_m((240, 240, 240), (250, 200, 20), (40, 120, 205), (205, 40, 40)),
                  _m((220, 220, 214), (200, 172, 44), (196, 60, 52))),
    "tram_paint": (_m((225, 40, 40), (250, 250, 250), (250, 210, 30), (40, 90, 175)),
                   _m((192, 192, 186), (200, 62, 52), (222, 202, 64))),
    "bike_frame": (_m((205, 30, 30), (30, 30, 30), (40, 90, 205), (225, 225, 225)),
                   _m((40, 40, 42), (150, 40, 40), (60, 80, 130), (180, 180, 176))),
    "moto_body": (_m((30, 30, 30), (205, 30, 30), (40, 60, 185), (245, 140, 20)),
                  _m((32, 32, 34), (140, 40, 40), (60, 66, 100))),
    "hood": (_m((40, 40, 45)), _m((38, 38, 42), (62, 62, 68), jitter=0.04, coarse=0.06)),
}

SYNTHETIC_MATERIALS = MappingProxyType({name: pair[0] for name, pair in _MATERIALS.items()})
REALISTIC_MATERIALS = MappingProxyType({name: pair[1] for name, pair in _MATERIALS.items()})
