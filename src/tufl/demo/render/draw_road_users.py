"""Road users: people, bicycles and motorcycles, cars, trucks, buses and trams, the ego car's bonnet."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tufl.demo.render.camera import ground_quad, side_quad, upright_quad
from tufl.demo.render.canvas import Canvas
from tufl.demo.render.domains import uniform
from tufl.demo.render.label_ids import (
    BICYCLE,
    BUS,
    CAR,
    EGO_VEHICLE,
    MOTORCYCLE,
    PERSON,
    RIDER,
    TRAIN,
    TRUCK,
)

# --------------------------------------------------------------------------- people and two-wheelers


def draw_person(cv: Canvas, x: float, z: float, rng: np.random.Generator, view: str) -> None:
    """A pedestrian seen from the front/back (``view="front"``) or walking across (``"side"``)."""
    cam = cv.camera
    h = uniform(rng, (1.55, 1.95))
    px = cam.px(1.0, z)
    skin, hair = cv.part(PERSON, "skin"), cv.part(PERSON, "hair")
    legs, top = cv.part(PERSON, "clothes"), cv.part(PERSON, "clothes")
    hip, shoulder = 0.5 * h, 0.82 * h
    if view == "front":
        spread = uniform(rng, (0.0, 0.12))
        for s in (-1, 1):
            cv.stroke(legs, cam.points([x + s * 0.09, x + s * (0.09 + spread)], [hip, 0.03], z), 0.14 * px)
            cv.stroke(top, cam.points([x + s * 0.21, x + s * 0.27], [shoulder - 0.05, hip + 0.05], z), 0.1 * px)
        torso_x = [x - 0.2, x + 0.2, x + 0.17, x - 0.17]
    else:
        stride = uniform(rng, (0.15, 0.4))
        for s in (-1, 1):
            cv.stroke(legs, cam.points([x, x + s * stride * 0.6, x + s * stride], [hip, hip * 0.5, 0.03], z),
                      0.14 * px)
            cv.stroke(top, cam.points([x, x - s * stride * 0.5], [shoulder - 0.05, hip + 0.05], z), 0.1 * px)
        torso_x = [x - 0.12, x + 0.12, x + 0.11, x - 0.11]
    cv.fill(top, cam.points(torso_x, [shoulder, shoulder, hip - 0.02, hip - 0.02], z))
    head_v = cam.points(x, 0.93 * h, z)[0]
    cv.disc(skin, head_v[0], head_v[1], 0.09 * px, 0.11 * px)
    cv.disc(hair, head_v[0], head_v[1] - 0.05 * px, 0.09 * px, 0.065 * px)


def draw_rider_back(cv: Canvas, x: float, z: float, rng: np.random.Generator, motor: bool,
                    facing_camera: bool) -> None:
    """A cyclist or motorcyclist riding along the street, seen from behind or ahead."""
    cam = cv.camera
    px = cam.px(1.0, z)
    label = MOTORCYCLE if motor else BICYCLE
    frame = cv.part(label, "moto_body" if motor else "bike_frame")
    tyre = cv.part(label, "tyre")
    wheel_w = 0.14 if motor else 0.05
    cv.fill(tyre, upright_quad(cam, x - wheel_w, x + wheel_w, 0.0, 0.68, z))
    if motor:
        cv.fill(frame, cam.points([x - 0.28, x + 0.28, x + 0.24, x - 0.24], [0.35, 0.35, 0.85, 0.85], z - 0.05))
        light = "head_light" if facing_camera else "tail_light"
        cv.fill(cv.part(label, light), upright_quad(cam, x - 0.08, x + 0.08, 0.7, 0.8, z - 0.1))
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


def draw_bike_side(cv: Canvas, x: float, z: float, rng: np.random.Generator, motor: bool,
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


def _faces(cv: Canvas, label: int, material: str, colour: np.ndarray, top_shade: float = 1.1) -> list[int]:
    """Parts for the front, side and top of a box painted ``colour``: the side darker, the top lighter."""
    return [cv.part(label, material, shade=s, colour=colour) for s in (1.0, 0.85, top_shade)]


def _box(cv: Canvas, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float,
         front: int, side: int, top: int | None = None) -> None:
    """The visible faces of an axis-aligned box (near face at ``z0``)."""
    cam = cv.camera
    if x0 > 0:
        cv.fill(side, side_quad(cam, x0, y0, y1, z0, z1))
    elif x1 < 0:
        cv.fill(side, side_quad(cam, x1, y0, y1, z0, z1))
    if top is not None and y1 < cam.elevation:
        cv.fill(top, cam.points([x0, x1, x1, x0], y1, [z0, z0, z1, z1]))
    cv.fill(front, upright_quad(cam, x0, x1, y0, y1, z0))


def _side_plane(x0: float, x1: float) -> float | None:
    """X of the side face the camera sees, if any."""
    return x0 if x0 > 0 else x1 if x1 < 0 else None


def _draw_wheels(cv: Canvas, part: int, x0: float, x1: float, zs: Sequence[float], r: float,
                 inset: float) -> None:
    """Wheels of radius ``r`` at depths ``zs`` on the visible side, and the two at the near axle."""
    cam = cv.camera
    plane = _side_plane(x0, x1)
    if plane is not None:
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        for zc in zs:
            cv.fill(part, cam.points(plane, r + r * np.sin(angles), zc + r * np.cos(angles)))
    z_axle = zs[0]
    for xa, xb in ((x0 + inset, x0 + inset + 0.28), (x1 - inset - 0.28, x1 - inset)):
        cv.fill(part, upright_quad(cam, xa, xb, 0.0, 2 * r * 0.8, z_axle))


def _draw_lamps(cv: Canvas, label: int, facing_camera: bool, x0: float, x1: float, y0: float,
                y1: float, z: float) -> None:
    """Head lights (or tail lights, seen from behind) at both corners of a vehicle's near face."""
    lamp = cv.part(label, "head_light" if facing_camera else "tail_light")
    for xa in (x0 + 0.1, x1 - 0.35):
        cv.fill(lamp, upright_quad(cv.camera, xa, xa + 0.25, y0, y1, z - 0.01))


def _vehicle_shadow(cv: Canvas, x0: float, x1: float, z0: float, z1: float) -> None:
    cv.cast_shadow(ground_quad(cv.camera, x0 - 0.15, x1 + 0.15, z0 - 0.25, z1))


def draw_car(cv: Canvas, x: float, z: float, length: float, rng: np.random.Generator,
             facing_camera: bool) -> None:
    """A car centred on ``x`` whose near end is at depth ``z``."""
    w = uniform(rng, (1.7, 1.9))
    body_top = uniform(rng, (0.85, 1.0))
    roof = body_top + uniform(rng, (0.42, 0.55))
    x0, x1 = x - w / 2, x + w / 2
    z1 = z + length
    _vehicle_shadow(cv, x0, x1, z, z1)
    paint = _faces(cv, CAR, "car_paint", cv.colour("car_paint"), top_shade=1.12)
    _draw_wheels(cv, cv.part(CAR, "tyre"), x0, x1, [z + 0.8, z1 - 0.8], 0.32, 0.08)
    _box(cv, x0, x1, 0.3, body_top, z, z1, *paint)
    near_overhang, far_overhang = (1.3, 0.9) if facing_camera else (0.9, 1.3)
    cz0, cz1 = z + near_overhang, z1 - far_overhang
    cx0, cx1 = x0 + 0.12, x1 - 0.12
    _box(cv, cx0, cx1, body_top, roof, cz0, cz1, *paint)
    glass = cv.part(CAR, "glass")
    _box_glass(cv, glass, cx0, cx1, body_top + 0.05, roof - 0.07, cz0, cz1, 0.12)
    _draw_lamps(cv, CAR, facing_camera, x0, x1, body_top - 0.28, body_top - 0.12, z)
    cv.fill(cv.part(CAR, "plate"), upright_quad(cv.camera, x - 0.26, x + 0.26, 0.42, 0.54, z - 0.01))


def _box_glass(cv: Canvas, glass: int, x0: float, x1: float, y0: float, y1: float, z0: float,
               z1: float, inset: float) -> None:
    """Windows on the visible near and side faces of a cabin box."""
    cam = cv.camera
    cv.fill(glass, upright_quad(cam, x0 + inset, x1 - inset, y0, y1, z0 - 0.01))
    plane = _side_plane(x0, x1)
    if plane is not None:
        mid = (z0 + z1) / 2
        for za, zb in ((z0 + inset, mid - 0.05), (mid + 0.05, z1 - inset)):
            cv.fill(glass, side_quad(cam, plane, y0, y1, za, zb))


def draw_truck(cv: Canvas, x: float, z: float, length: float, rng: np.random.Generator,
               facing_camera: bool) -> None:
    """A box truck: a cab and a cargo box."""
    cab_len = 2.2
    cargo_len = length - cab_len
    x0, x1 = x - 1.25, x + 1.25
    _vehicle_shadow(cv, x0, x1, z, z + length)
    cargo_colour, cab_colour = cv.colour("truck_paint"), cv.colour("truck_paint")
    cargo = _faces(cv, TRUCK, "truck_paint", cargo_colour)
    cab = _faces(cv, TRUCK, "truck_paint", cab_colour)
    tyre = cv.part(TRUCK, "tyre")
    height = uniform(rng, (3.2, 3.8))
    if facing_camera:
        _draw_wheels(cv, tyre, x0, x1, [z + 1.0, z + length - 1.2], 0.48, 0.1)
        _box(cv, x0, x1, 0.9, height, z + cab_len, z + length, *cargo)
        _box(cv, x0 + 0.05, x1 - 0.05, 0.5, 2.9, z, z + cab_len, *cab)
        glass = cv.part(TRUCK, "glass")
        cv.fill(glass, upright_quad(cv.camera, x0 + 0.2, x1 - 0.2, 1.7, 2.7, z - 0.01))
    else:
        _draw_wheels(cv, tyre, x0, x1, [z + 1.2, z + length - 1.0], 0.48, 0.1)
        _box(cv, x0 + 0.05, x1 - 0.05, 0.5, 2.9, z + cargo_len, z + length, *cab)
        _box(cv, x0, x1, 0.9, height, z, z + cargo_len, *cargo)
        chassis = cv.part(TRUCK, "tyre")
        cv.fill(chassis, upright_quad(cv.camera, x0 + 0.1, x1 - 0.1, 0.45, 0.9, z + 0.05))


def draw_long_vehicle(cv: Canvas, x: float, z: float, length: float, rng: np.random.Generator,
                      facing_camera: bool, tram: bool) -> None:
    """A bus or a tram (label "train", as trams are in Cityscapes)."""
    cam = cv.camera
    label, material = (TRAIN, "tram_paint") if tram else (BUS, "bus_paint")
    half_w = 1.2 if tram else 1.27
    top = uniform(rng, (3.2, 3.5)) if tram else uniform(rng, (2.9, 3.2))
    x0, x1 = x - half_w, x + half_w
    _vehicle_shadow(cv, x0, x1, z, z + length)
    faces = _faces(cv, label, material, cv.colour(material))
    tyre = cv.part(label, "tyre")
    wheel_z = [z + 2.5, z + length - 2.5] if not tram else list(np.arange(z + 2.0, z + length, 8.5).tolist())
    _draw_wheels(cv, tyre, x0, x1, wheel_z, 0.45, 0.1)
    _box(cv, x0, x1, 0.3, top, z, z + length, *faces)
    glass = cv.part(label, "glass")
    win_lo = 1.0 if facing_camera else 1.6
    cv.fill(glass, upright_quad(cam, x0 + 0.15, x1 - 0.15, win_lo, top - 0.35, z - 0.01))
    plane = _side_plane(x0, x1)
    if plane is not None:
        pitch = uniform(rng, (1.3, 1.8))
        for s in np.arange(z + 0.6, z + length - 1.0, pitch).tolist():
            cv.fill(glass, side_quad(cam, plane, 1.25, top - 0.4, s, s + pitch - 0.2))
    if tram:  # pantograph
        pole = cv.part(label, "tyre")
        mid = z + length / 2
        cv.stroke(pole, cam.points([x - 0.5, x, x + 0.5], [top, top + 0.9, top], mid), cam.px(0.06, mid))
    else:
        _draw_lamps(cv, label, facing_camera, x0, x1, 0.6, 0.85, z)


def draw_ego_hood(cv: Canvas, rng: np.random.Generator) -> None:
    """The recording car's bonnet across the bottom of the image."""
    cam = cv.camera
    w, h = cam.width, cam.height
    rise = uniform(rng, (0.1, 0.16)) * h
    xs = np.linspace(-0.02 * w, 1.02 * w, 17)
    t = (xs - w / 2) / (w / 2)
    top = h - rise * (1.0 - 0.45 * t ** 2)
    pts = list(zip(xs.tolist(), top.tolist())) + [(1.02 * w, h + 2.0), (-0.02 * w, h + 2.0)]
    cv.fill(cv.part(EGO_VEHICLE, "hood"), pts)
