"""Where the objects of a street stand: each is placed as a painter, and painted far to near.

A painter draws one object when called; the ``place_*`` functions return them
with their depth, so that objects of all kinds can be painted in one far-to-near
order. Placing draws from the generator, and so does painting, so both orders
are part of what a seed means.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np

from tufl.demo.render.camera import Z_NEAR
from tufl.demo.render.canvas import Canvas
from tufl.demo.render.domains import Layout, uniform
from tufl.demo.render.draw_furniture import draw_pole
from tufl.demo.render.draw_road_users import (
    draw_bike_side,
    draw_car,
    draw_long_vehicle,
    draw_person,
    draw_rider_back,
    draw_truck,
)
from tufl.demo.render.draw_roadside import (
    draw_bush,
    draw_fence,
    draw_hedge,
    draw_palm,
    draw_tree,
    draw_wall,
)
from tufl.demo.render.street import Street

Painter = Callable[[], None]  # draws one object when called
_CAR_LENGTH = (3.9, 4.8)


def place_edge_structures(cv: Canvas, street: Street, rng: np.random.Generator) -> list[Painter]:
    """Walls, fences and hedges along the outer sidewalk edges (drawn after the buildings)."""
    out: list[Painter] = []
    stop = street.end if street.cross_width else 200.0
    for side in (-1, 1):
        kind = street.sides[side > 0]
        x = street.outer_edge(side)
        if kind == "wall":
            out.append(partial(draw_wall, cv, x, Z_NEAR, stop, rng))
        elif kind == "fence":
            out.append(partial(draw_fence, cv, x, side, Z_NEAR, stop, rng))
        elif kind == "park" and rng.random() < 0.6:
            z0 = uniform(rng, (Z_NEAR, 20.0))
            out.append(partial(draw_hedge, cv, x + side * 0.5, z0, z0 + uniform(rng, (10.0, 60.0)), rng))
        elif kind == "buildings" and rng.random() < 0.15:
            z0 = uniform(rng, (Z_NEAR, 30.0))
            out.append(partial(draw_hedge, cv, x - side * 0.5, z0, z0 + uniform(rng, (5.0, 25.0)), rng,
                               (0.5, 1.0)))
    return out


def place_traffic(cv: Canvas, layout: Layout, street: Street, z_min: float,
                  rng: np.random.Generator) -> list[tuple[float, Painter]]:
    """Vehicles driving in every lane (trams on the tram lane) and cars parked along the kerbs."""
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
                length = uniform(rng, (24.0, 32.0))
                painter: Painter = partial(draw_long_vehicle, cv, x, z, length, rng, oncoming, True)
            elif kind < layout.truck_fraction:
                length = uniform(rng, (6.7, 10.2))
                painter = partial(draw_truck, cv, x, z, length, rng, oncoming)
            elif kind < layout.truck_fraction + layout.bus_fraction:
                length = uniform(rng, (10.5, 13.0))
                painter = partial(draw_long_vehicle, cv, x, z, length, rng, oncoming, False)
            else:
                length = uniform(rng, _CAR_LENGTH)
                painter = partial(draw_car, cv, x, z, length, rng, oncoming)
            out.append((z, painter))
            z += length + 2.0 + rng.exponential(layout.vehicle_gap)
    for side in (-1, 1):  # parked cars
        if not street.parking[side > 0]:
            continue
        x = street.kerb(side) - side * 1.1
        z = z_min - 2.0 + rng.exponential(3.0)
        while z < z_max:
            length = uniform(rng, _CAR_LENGTH)
            if rng.random() < 0.8:  # else an empty space
                facing = rng.random() < 0.3
                out.append((z, partial(draw_car, cv, x + rng.normal(0.0, 0.1), z, length, rng, facing)))
            z += length + 0.5 + rng.exponential(2.0)
    return out


def place_people(cv: Canvas, layout: Layout, street: Street, z_min: float,
                 rng: np.random.Generator) -> list[tuple[float, Painter]]:
    """Pedestrians, cyclists and motorcyclists, and bicycles parked on the sidewalks."""
    out: list[tuple[float, Painter]] = []
    z_max = min(street.end, 70.0)

    def on_sidewalk() -> tuple[float, float]:
        side = -1 if rng.random() < 0.5 else 1
        kerb, width = street.kerb(side), street.walk[side > 0]
        return kerb + side * uniform(rng, (0.4, max(0.5, width - 0.4))), uniform(rng, (z_min, z_max))

    for _ in range(int(rng.poisson(layout.persons))):
        if rng.random() < 0.85:
            x, z = on_sidewalk()
            out.append((z, partial(draw_person, cv, x, z, rng, "front")))
        else:
            x, z = uniform(rng, street.road), uniform(rng, (z_min, z_max))
            out.append((z, partial(draw_person, cv, x, z, rng, "side")))
    edges = street.lane_edges
    for motor, mean in ((False, layout.cyclists), (True, layout.motorcyclists)):
        for _ in range(int(rng.poisson(mean))):
            z = uniform(rng, (z_min + 2.0, z_max))
            if rng.random() < 0.65:  # riding along the street, near a kerb
                oncoming = rng.random() < 0.3
                x = edges[0] + 0.8 if oncoming else edges[-1] - 0.8
                out.append((z, partial(draw_rider_back, cv, x, z, rng, motor, oncoming)))
            else:  # crossing
                x = uniform(rng, street.road)
                out.append((z, partial(draw_bike_side, cv, x, z, rng, motor, True)))
    for _ in range(int(rng.poisson(layout.parked_bicycles))):
        x, z = on_sidewalk()
        out.append((z, partial(draw_bike_side, cv, x, z, rng, False, False)))
    return out


def place_furniture(cv: Canvas, layout: Layout, street: Street, z_min: float,
                    rng: np.random.Generator) -> list[tuple[float, Painter]]:
    """Poles along both kerbs and, on some sides, a row of street trees."""
    out: list[tuple[float, Painter]] = []
    z_max = min(street.end - 1.0, 120.0)
    for side in (-1, 1):
        kerb = street.kerb(side)
        z = z_min - 1.0 + rng.uniform(0.0, layout.pole_spacing[1])
        while z < z_max:
            x = kerb + side * 0.5
            out.append((z, partial(draw_pole, cv, x, z, side, rng)))
            z += uniform(rng, layout.pole_spacing)
        if rng.random() < layout.p_tree_row:
            width = street.walk[side > 0]
            x = kerb + side * min(1.2, width / 2)
            z = z_min - 2.0 + rng.uniform(0.0, 6.0)
            while z < z_max:
                if rng.random() < layout.palm_fraction:
                    out.append((z, partial(draw_palm, cv, x, z, rng)))
                else:
                    out.append((z, partial(draw_tree, cv, x, z, rng, True)))
                z += uniform(rng, layout.tree_spacing)
    return out


def place_park(cv: Canvas, layout: Layout, street: Street, z_min: float,
               rng: np.random.Generator) -> list[tuple[float, Painter]]:
    """Trees and bushes behind the sidewalk where the street is not lined by buildings."""
    out: list[tuple[float, Painter]] = []
    for side in (-1, 1):
        if street.sides[side > 0] == "buildings":
            continue
        edge = street.outer_edge(side)
        for _ in range(int(rng.poisson(8.0))):
            x = edge + side * uniform(rng, (1.5, 25.0))
            z = uniform(rng, (z_min, 120.0))
            if rng.random() < 0.6:
                tree = draw_palm if rng.random() < layout.palm_fraction else partial(draw_tree, pit=False)
                out.append((z, partial(tree, cv, x, z, rng)))
            else:
                out.append((z, partial(draw_bush, cv, x, z, rng)))
    return out


def paint_far_to_near(items: list[tuple[float, Painter]]) -> None:
    """Call the painters of ``(depth, painter)`` pairs, the farthest first."""
    for _, paint in sorted(items, key=lambda item: -item[0]):
        paint()
