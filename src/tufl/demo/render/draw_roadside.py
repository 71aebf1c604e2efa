"""What lines the street: building blocks and the skyline, walls and fences, hedges, trees and bushes."""

from __future__ import annotations

import numpy as np

from tufl.demo.render.camera import FAR, Z_NEAR, Camera, Points, ground_quad, upright_quad
from tufl.demo.render.canvas import Canvas
from tufl.demo.render.domains import Layout, uniform
from tufl.demo.render.label_ids import BUILDING, FENCE, TERRAIN, VEGETATION, WALL
from tufl.demo.render.street import Block

# --------------------------------------------------------------------------- buildings


def _plane_points(cam: Camera, block: Block, s: np.ndarray, y: np.ndarray,
                  offset: float = 0.0) -> Points:
    """Image points of facade coordinates (along-facade ``s``, height ``y``)."""
    if block.side == 0:
        return cam.points(s, y, block.plane - offset)
    return cam.points(block.plane - block.side * offset, y, s)


def draw_block(cv: Canvas, block: Block, rng: np.random.Generator) -> None:
    """A building block: its facade with cornice and windows, and the end wall facing the camera."""
    cam = cv.camera
    colour = cv.colour("facade")
    h, s0, s1 = block.height, block.start, block.stop
    if block.side != 0 and s0 > Z_NEAR + 0.1:  # the end wall facing the camera
        back = block.plane + block.side * 14.0
        end_wall = Block(0, s0, min(block.plane, back), max(block.plane, back), h)
        cv.fill(cv.part(BUILDING, "facade", shade=0.8, colour=colour),
                upright_quad(cam, block.plane, back, 0.0, h, s0))
        _draw_windows(cv, end_wall, rng, shade=0.8)
    cv.fill(cv.part(BUILDING, "facade", colour=colour),
            _plane_points(cam, block, np.array([s0, s1, s1, s0]), np.array([0.0, 0.0, h, h])))
    cornice = cv.part(BUILDING, "cornice")
    cv.fill(cornice, _plane_points(cam, block, np.array([s0, s1, s1, s0]),
                                   np.array([h - 0.5, h - 0.5, h, h]), offset=0.05))
    _draw_windows(cv, block, rng)


def _draw_windows(cv: Canvas, block: Block, rng: np.random.Generator, shade: float = 1.0) -> None:
    """A grid of windows (and shop fronts on the ground floor) on one facade."""
    cam = cv.camera
    s0, s1 = block.start, block.stop
    floor = uniform(rng, (3.0, 3.6))
    win_w, win_h = uniform(rng, (1.0, 1.6)), uniform(rng, (1.3, 1.8))
    pitch = win_w + uniform(rng, (1.2, 2.2))
    ground = uniform(rng, (3.0, 4.0))
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
        for s in np.arange(s0 + 0.8, s1 - 3.0, uniform(rng, (4.0, 7.0))).tolist():
            cv.fill(shop, _plane_points(cam, block, np.array([s, s + 3.0, s + 3.0, s]),
                                        np.array([0.3, 0.3, 2.6, 2.6]), offset=0.02))


def draw_skyline(cv: Canvas, layout: Layout, rng: np.random.Generator) -> None:
    """Distant buildings and tree lines on the horizon."""
    cam = cv.camera
    z = FAR * 0.8
    x = -FAR
    lo, hi = layout.building_height
    while x < FAR:
        width = uniform(rng, (15.0, 45.0))
        kind = rng.random()
        if kind < 0.55:
            h = uniform(rng, (lo, hi * 0.8))
            cv.fill(cv.part(BUILDING, "distant"), upright_quad(cam, x, x + width, 0.0, h, z))
        elif kind < 0.8:
            xs = np.linspace(x, x + width, 8)
            tops = rng.uniform(6.0, 14.0, size=8)
            pts = cam.points(xs, tops, z) + cam.points(xs[::-1], 0.0, z)
            cv.fill(cv.part(VEGETATION, "foliage", shade=0.8), pts)
        x += width


# --------------------------------------------------------------------------- walls and fences


def draw_wall(cv: Canvas, x: float, z0: float, z1: float, rng: np.random.Generator) -> None:
    """A wall along the street at ``x`` from depth ``z0`` to ``z1``, with a coping on top."""
    h = uniform(rng, (0.8, 2.4))
    cv.fill(cv.part(WALL, "wall"), cv.camera.points(x, [0.0, 0.0, h, h], [z0, z1, z1, z0]))
    cv.fill(cv.part(WALL, "wall", shade=0.85),
            cv.camera.points(x, [h - 0.15, h - 0.15, h, h], [z0, z1, z1, z0]))


def draw_fence(cv: Canvas, x: float, side: int, z0: float, z1: float,
               rng: np.random.Generator) -> None:
    """A mesh fence with posts and rails along the street at ``x`` from depth ``z0`` to ``z1``."""
    cam = cv.camera
    h = uniform(rng, (1.0, 2.0))
    cv.fill(cv.part(FENCE, "fence_mesh"), cam.points(x, [0.05, 0.05, h, h], [z0, z1, z1, z0]))
    post = cv.part(FENCE, "fence_post")
    spacing = uniform(rng, (1.5, 3.0))
    for z in np.arange(z0, z1, spacing).tolist():
        cv.stroke(post, cam.points(x - side * 0.03, [0.0, h + 0.05], z), cam.px(0.08, z))
    for y in (h, h * 0.5):
        cv.stroke(post, cam.points(x - side * 0.03, y, [max(z0, Z_NEAR + 0.5), z1]), 1.0)


# --------------------------------------------------------------------------- vegetation


def draw_hedge(cv: Canvas, x: float, z0: float, z1: float, rng: np.random.Generator,
               height: tuple[float, float] = (0.7, 1.6)) -> None:
    """A hedge of uneven ``height`` along the street at ``x`` from depth ``z0`` to ``z1``."""
    n = max(4, int((z1 - z0) / 1.5))
    zs = np.linspace(z0, z1, n)
    tops = uniform(rng, height) + rng.normal(0.0, 0.12, size=n)
    pts = cv.camera.points(x, 0.0, zs) + cv.camera.points(x, tops[::-1], zs[::-1])
    cv.fill(cv.part(VEGETATION, "foliage"), pts)


def draw_tree(cv: Canvas, x: float, z: float, rng: np.random.Generator, pit: bool) -> None:
    """A leafy tree at ``(x, z)``; ``pit``: standing in a square of soil in the sidewalk."""
    cam = cv.camera
    if pit:
        cv.fill(cv.part(TERRAIN, "terrain", shade=0.8), ground_quad(cam, x - 0.6, x + 0.6, z - 0.6, z + 0.6))
    trunk_h, radius = uniform(rng, (1.8, 3.5)), uniform(rng, (1.4, 3.0))
    trunk = cv.part(VEGETATION, "trunk")
    cv.stroke(trunk, cam.points(x, [0.0, trunk_h + radius * 0.5], z), cam.px(0.25, z))
    leaves = [cv.part(VEGETATION, "foliage", shade=s) for s in (0.85, 1.0)]
    for i in range(int(rng.integers(4, 8))):
        r = radius * uniform(rng, (0.45, 0.75))
        cx = x + rng.normal(0.0, radius * 0.35)
        cy = trunk_h + radius * uniform(rng, (0.5, 1.3))
        (u, v), = cam.points(cx, cy, z)
        cv.disc(leaves[i % 2], u, v, cam.px(r, z) * uniform(rng, (0.9, 1.2)), cam.px(r, z))


def draw_palm(cv: Canvas, x: float, z: float, rng: np.random.Generator) -> None:
    """A palm tree at ``(x, z)``: a leaning trunk and a crown of drooping fronds."""
    cam = cv.camera
    h = uniform(rng, (6.0, 11.0))
    lean = rng.normal(0.0, 0.4)
    ys = np.linspace(0.0, h, 6)
    xs = x + lean * (ys / h) ** 2
    cv.stroke(cv.part(VEGETATION, "trunk"), cam.points(xs, ys, z), cam.px(0.3, z))
    leaf = cv.part(VEGETATION, "foliage")
    top_x, top_y = float(xs[-1]), h
    for angle in np.linspace(0, 2 * np.pi, int(rng.integers(7, 11)), endpoint=False) + rng.uniform(0, 1):
        length = uniform(rng, (2.0, 3.2))
        dx = np.cos(angle) * length
        droop = -abs(np.sin(angle)) * 0.4 * length - 0.6 * length * (abs(np.cos(angle)) > 0.5)
        tip = (top_x + dx, top_y + droop + 0.3)
        mid = (top_x + dx * 0.5, top_y + 0.45)
        pts = cam.points([top_x, mid[0], tip[0], mid[0]], [top_y, mid[1] + 0.25, tip[1], mid[1] - 0.2], z)
        cv.fill(leaf, pts)


def draw_bush(cv: Canvas, x: float, z: float, rng: np.random.Generator) -> None:
    """A bush at ``(x, z)``."""
    cam = cv.camera
    w, h = uniform(rng, (0.8, 2.5)), uniform(rng, (0.6, 1.5))
    (u, v), = cam.points(x, h / 2, z)
    cv.disc(cv.part(VEGETATION, "foliage"), u, v, cam.px(w / 2, z), cam.px(h / 2, z))
