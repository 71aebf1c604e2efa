"""The ground: terrain, road, sidewalks and kerbs, lane markings and rails, and building shadows on it."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tufl.demo.render.camera import FAR, Z_NEAR, Camera, Points, ground_quad
from tufl.demo.render.canvas import Canvas
from tufl.demo.render.domains import uniform
from tufl.demo.render.label_ids import ROAD, SIDEWALK, TERRAIN
from tufl.demo.render.street import Block, Street


def draw_ground(cv: Canvas, street: Street, rng: np.random.Generator) -> None:
    """Terrain to the horizon, the road and sidewalks of ``street`` and its cross street, markings."""
    cam = cv.camera
    end = street.end
    cv.fill(cv.part(TERRAIN, "terrain"), ground_quad(cam, -FAR, FAR, Z_NEAR, FAR))
    road_end = end if street.cross_width else FAR
    cv.fill(cv.part(ROAD, "road"), ground_quad(cam, *street.road, Z_NEAR, road_end))
    for side in (-1, 1):
        kerb, outer = street.kerb(side), street.outer_edge(side)
        cv.fill(cv.part(SIDEWALK, "sidewalk"),
                ground_quad(cam, min(kerb, outer), max(kerb, outer), Z_NEAR, road_end))
        kerb_in = kerb + side * 0.25
        cv.fill(cv.part(SIDEWALK, "kerb"),
                ground_quad(cam, min(kerb, kerb_in), max(kerb, kerb_in), Z_NEAR, road_end))
    if street.cross_width:
        far = end + street.cross_width
        cv.fill(cv.part(ROAD, "road"), ground_quad(cam, -FAR, FAR, end, far))
        cv.fill(cv.part(SIDEWALK, "sidewalk"), ground_quad(cam, -FAR, FAR, far, far + 4.0))
    _draw_markings(cv, street, road_end, rng)


def _dashes(cam: Camera, x: float, width: float, z0: float, z1: float, dash: float,
            gap: float, phase: float) -> list[Points]:
    """Dashes ``dash`` long, ``gap`` apart, along the line ``x`` from ``z0 + phase`` to ``z1``."""
    starts = np.arange(z0 + phase, z1, dash + gap)
    quads = []
    for s in starts.tolist():
        quads.append(ground_quad(cam, x - width / 2, x + width / 2, s, min(s + dash, z1)))
    return quads


def _draw_markings(cv: Canvas, street: Street, road_end: float, rng: np.random.Generator) -> None:
    """Lane and edge lines, tram rails and sometimes a zebra crossing."""
    cam = cv.camera
    paint = cv.part(ROAD, "marking")
    edges = street.lane_edges
    z_stop = min(road_end, 160.0)
    for i in range(1, len(edges) - 1):
        centre = i == street.oncoming_lanes
        solid = centre and rng.random() < 0.5
        dash, gap = (z_stop, 1.0) if solid else (3.0, 6.0)
        for quad in _dashes(cam, edges[i], 0.15, Z_NEAR, z_stop, dash, gap, float(rng.uniform(0, 6))):
            cv.fill(paint, quad)
    for x in (edges[0], edges[-1]):
        if rng.random() < 0.6:
            cv.fill(paint, ground_quad(cam, x - 0.07, x + 0.07, Z_NEAR, z_stop))
    if street.tram_lane is not None:
        rail = cv.part(ROAD, "rail")
        centre = (edges[street.tram_lane] + edges[street.tram_lane + 1]) / 2
        for x in (centre - 0.72, centre + 0.72):
            cv.fill(rail, ground_quad(cam, x - 0.04, x + 0.04, Z_NEAR, z_stop))
    if street.cross_width or rng.random() < 0.3:  # zebra crossing
        z = street.end - 4.0 if street.cross_width else uniform(rng, (12.0, 40.0))
        for x in np.arange(street.road[0] + 0.3, street.road[1] - 0.5, 1.0).tolist():
            cv.fill(paint, ground_quad(cam, x, x + 0.5, z, z + 3.0))


def draw_building_shadows(cv: Canvas, blocks: Sequence[Block], rng: np.random.Generator) -> None:
    """Sunlight from one side: the blocks there shade part of the street."""
    sun_side = -1 if rng.random() < 0.5 else 1
    reach, shear = uniform(rng, (0.2, 0.7)), uniform(rng, (-0.3, 0.3))
    for b in blocks:
        if b.side != sun_side:
            continue
        x_far = b.plane - b.side * b.height * reach
        cv.cast_shadow(cv.camera.points([b.plane, b.plane, x_far, x_far], 0.0,
                                        [b.start, b.stop, b.stop + b.height * shear,
                                         b.start + b.height * shear]))
