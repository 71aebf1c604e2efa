"""Street layout: the cross-section of the street the camera drives along, and its building blocks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tufl.demo.render.camera import Z_NEAR
from tufl.demo.render.domains import Layout, uniform

PARKING_WIDTH = 2.2  # metres
ROADSIDES = ("buildings", "wall", "fence", "park")


@dataclass(frozen=True)
class Street:
    """Cross-section and extent of the street the camera drives along."""

    lane_edges: tuple[float, ...]  # X of the lane boundaries, left to right
    oncoming_lanes: int  # the leftmost lanes carry oncoming traffic
    parking: tuple[bool, bool]  # parking strip along the left / right kerb
    road: tuple[float, float]  # X range of the carriageway, parking strips included
    walk: tuple[float, float]  # sidewalk widths, left / right
    sides: tuple[str, str]  # one of ROADSIDES per side
    end: float  # depth where the street meets a cross street or, if open, fades out
    cross_width: float  # width of the cross street (0: none)
    tram_lane: int | None

    def kerb(self, side: int) -> float:
        """X of the kerb on side -1 (left) or +1 (right)."""
        return self.road[0] if side < 0 else self.road[1]

    def outer_edge(self, side: int) -> float:
        """X of the far edge of the sidewalk on side -1 or +1."""
        return self.kerb(side) + side * self.walk[side > 0]


@dataclass(frozen=True)
class Block:
    """A building block: a facade along the street (or across it) of one height."""

    side: int  # -1 / +1: along the left / right of the street; 0: across its end
    plane: float  # X of a side facade, Z of a facade across the street
    start: float  # extent along the facade (Z for side facades, X across the street)
    stop: float
    height: float


def sample_street(layout: Layout, rng: np.random.Generator) -> Street:
    """A random street of ``layout``: lanes, parking strips, sidewalks, borders, cross street."""
    lanes = int(rng.integers(layout.lanes[0], layout.lanes[1] + 1))
    width = uniform(rng, layout.lane_width)
    oncoming = lanes // 2
    own_lane = int(rng.integers(oncoming, lanes))
    edges = (np.arange(lanes + 1) - own_lane - 0.5) * width + rng.normal(0.0, 0.2)
    parking = (bool(rng.random() < layout.p_parking), bool(rng.random() < layout.p_parking))
    road = (float(edges[0]) - PARKING_WIDTH * parking[0], float(edges[-1]) + PARKING_WIDTH * parking[1])
    walk = (uniform(rng, layout.sidewalk_width), uniform(rng, layout.sidewalk_width))
    weights = np.asarray(layout.roadside) / np.sum(layout.roadside)
    left, right = (ROADSIDES[i] for i in rng.choice(len(ROADSIDES), size=2, p=weights))
    cross = rng.random() < layout.p_cross_street
    end = uniform(rng, (35.0, 110.0)) if cross else uniform(rng, (150.0, 250.0))
    tram = int(rng.integers(lanes)) if rng.random() < layout.p_tram else None
    return Street(tuple(edges.tolist()), oncoming, parking, road, walk, (left, right), end,
                  uniform(rng, (10.0, 16.0)) if cross else 0.0, tram)


def sample_blocks(layout: Layout, street: Street, rng: np.random.Generator) -> list[Block]:
    """The building blocks along both sides of ``street`` and across its end."""
    blocks: list[Block] = []
    for side in (-1, 1):
        kind = street.sides[side > 0]
        if kind == "buildings":
            plane = street.outer_edge(side) + side * uniform(rng, (0.0, 0.8))
        elif rng.random() < 0.6:  # set-back buildings behind a wall, fence or park
            plane = street.outer_edge(side) + side * uniform(rng, (8.0, 30.0))
        else:
            continue
        z = Z_NEAR
        stop_at = street.end if street.cross_width else 220.0
        while z < stop_at:
            length, height = _block_size(layout, rng)
            blocks.append(Block(side, plane, z, min(z + length, stop_at), height))
            z += length
            if rng.random() < layout.p_block_gap:
                z += uniform(rng, (4.0, 14.0))
    if street.cross_width:
        plane = street.end + street.cross_width + 4.0
        x = -150.0
        while x < 150.0:
            length, height = _block_size(layout, rng)
            blocks.append(Block(0, plane, x, x + length, height))
            x += length
    return blocks


def _block_size(layout: Layout, rng: np.random.Generator) -> tuple[float, float]:
    """Length and height of one block (heights log-uniform)."""
    length = uniform(rng, layout.block_length)
    lo, hi = layout.building_height
    return length, float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
