"""The pinhole camera that projects the 3-D street (metres, looking down +Z) into the image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tufl.demo.render.domains import Layout, uniform

Points = list[tuple[float, float]]

Z_NEAR = 1.0  # metres; nothing is drawn closer to the camera
FAR = 400.0  # metres; extent of the ground plane and distance of the skyline


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at height ``elevation`` above the ground, looking down +Z."""

    width: int
    height: int
    focal: float
    cx: float
    horizon: float
    elevation: float

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = np.maximum(z, Z_NEAR)
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
            zi = max(zi, Z_NEAR)
            out.append((cx + f * xi / zi, hor + f * (elev - yi) / zi))
        return out

    def px(self, metres: float, z: float) -> float:
        """Image size of ``metres`` at depth ``z``."""
        return self.focal * metres / max(z, Z_NEAR)

    def nearest_visible_depth(self) -> float:
        """Depth of the ground seen at the bottom image row."""
        return self.focal * self.elevation / (self.height - self.horizon)


def sample_camera(layout: Layout, size: tuple[int, int], rng: np.random.Generator) -> Camera:
    """A camera of ``layout``'s field of view, height and horizon for an image of ``size``."""
    width, height = size
    hfov = np.deg2rad(uniform(rng, layout.hfov_deg))
    focal = width / 2 / np.tan(hfov / 2)
    return Camera(width, height, float(focal), width / 2 + rng.normal(0.0, 0.02 * width),
                  uniform(rng, layout.horizon) * height, uniform(rng, layout.camera_height))


def ground_quad(cam: Camera, x0: float, x1: float, z0: float, z1: float) -> Points:
    """The ground rectangle ``x0..x1`` by ``z0..z1`` in the image."""
    return cam.points([x0, x1, x1, x0], 0.0, [z0, z0, z1, z1])


def side_quad(cam: Camera, x: float, y0: float, y1: float, z0: float, z1: float) -> Points:
    """The rectangle ``y0..y1`` by ``z0..z1`` in the plane X = ``x`` (a face along the street)."""
    return cam.points(x, [y0, y0, y1, y1], [z0, z1, z1, z0])


def upright_quad(cam: Camera, x0: float, x1: float, y0: float, y1: float, z: float) -> Points:
    """The rectangle ``x0..x1`` by ``y0..y1`` facing the camera at depth ``z``."""
    return cam.points([x0, x1, x1, x0], [y0, y0, y1, y1], z)


def upright_rect(cam: Camera, x: float, y: float, width: float, height: float, z: float) -> Points:
    """A rectangle facing the camera, centred on ``(x, y)`` at depth ``z``."""
    return upright_quad(cam, x - width / 2, x + width / 2, y - height / 2, y + height / 2, z)
