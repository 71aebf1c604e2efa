"""Street furniture: lamp posts, traffic lights and traffic signs on their poles."""

from __future__ import annotations

import numpy as np

from tufl.demo.render.camera import upright_quad, upright_rect
from tufl.demo.render.canvas import Canvas
from tufl.demo.render.domains import uniform
from tufl.demo.render.label_ids import POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN


def draw_pole(cv: Canvas, x: float, z: float, side: int, rng: np.random.Generator) -> None:
    """A street lamp, a traffic-light pole, a sign post or a bare pole."""
    cam = cv.camera
    pole = cv.part(POLE, "pole")
    kind = rng.choice(4, p=[0.3, 0.25, 0.35, 0.1])
    height = {0: (6.0, 9.0), 1: (3.2, 5.0), 2: (2.4, 3.4), 3: (3.0, 7.0)}[int(kind)]
    h = uniform(rng, height)
    cv.stroke(pole, cam.points(x, [0.0, h], z), cam.px(0.14, z))
    if kind == 0:  # street lamp with an arm over the road
        arm = uniform(rng, (1.0, 2.5))
        tip = x - side * arm
        cv.stroke(pole, cam.points([x, x - side * arm * 0.6, tip], [h, h + 0.3, h + 0.25], z),
                  cam.px(0.09, z))
        (u, v), = cam.points(tip, h + 0.1, z)
        cv.disc(cv.part(POLE, "lamp_head"), u, v, cam.px(0.35, z), cam.px(0.12, z))
    elif kind == 1:  # traffic light, sometimes a second one on an arm over the road
        _draw_traffic_light(cv, x, h - 1.0, z - 0.15, rng)
        if rng.random() < 0.4:
            tip = x - side * uniform(rng, (2.5, 5.0))
            cv.stroke(pole, cam.points([x, tip], h - 0.1, z), cam.px(0.1, z))
            _draw_traffic_light(cv, tip, h - 1.2, z - 0.15, rng)
    elif kind == 2:  # traffic signs
        y = h
        for _ in range(int(rng.integers(1, 3))):
            size = _draw_sign(cv, x, y, z - 0.05, rng)
            y -= size + 0.1


def _draw_traffic_light(cv: Canvas, x: float, y: float, z: float, rng: np.random.Generator) -> None:
    """A traffic light whose box stands on height ``y``, one of its three lamps lit."""
    cam = cv.camera
    box = cv.part(TRAFFIC_LIGHT, "light_box")
    cv.fill(box, upright_quad(cam, x - 0.17, x + 0.17, y, y + 1.0, z))
    if rng.random() < 0.25:  # seen from behind: no lamps
        return
    lit = int(rng.integers(3))
    r = cam.px(0.1, z)
    for i, name in enumerate(("lamp_green", "lamp_amber", "lamp_red")):
        (u, v), = cam.points(x, y + 0.18 + 0.32 * i, z - 0.01)
        cv.disc(cv.part(TRAFFIC_LIGHT, name if i == lit else "lamp_off"), u, v, r)


def _draw_sign(cv: Canvas, x: float, top: float, z: float, rng: np.random.Generator) -> float:
    """One sign hanging from ``top``; returns its height."""
    cam = cv.camera
    shape = int(rng.integers(5))
    size = uniform(rng, (0.5, 0.75))
    cy = top - size / 2
    (u, v), = cam.points(x, cy, z)
    r = cam.px(size / 2, z)
    if rng.random() < 0.2:  # back of a sign
        cv.fill(cv.part(TRAFFIC_SIGN, "sign_back"), upright_rect(cam, x, cy, size, size, z))
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
                upright_rect(cam, x, cy, size * uniform(rng, (1.0, 2.0)), size, z))
    return size
