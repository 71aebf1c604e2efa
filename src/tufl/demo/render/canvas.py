"""The instance map a scene is painted into, with the label and colour of every instance."""

from __future__ import annotations

from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw

from tufl.demo.render.camera import Camera, Points
from tufl.demo.render.label_ids import SKY
from tufl.demo.render.materials import Material


class Canvas:
    """An instance map being painted, with the label and colour of every instance.

    Instance 0 is the sky, which fills the canvas at the start. Cast shadows are
    painted into a separate mask; they darken only ground surfaces (road,
    sidewalk, terrain) that remain visible in the final picture.
    """

    def __init__(self, camera: Camera, materials: Mapping[str, Material],
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
        """Fill the polygon ``points`` with instance ``part``."""
        self._draw.polygon(points, fill=part)

    def disc(self, part: int, u: float, v: float, ru: float, rv: float | None = None) -> None:
        """An ellipse of radii ``ru``, ``rv`` (a circle if ``rv`` is None) centred on ``(u, v)``."""
        rv = ru if rv is None else rv
        self._draw.ellipse([u - ru, v - rv, u + ru, v + rv], fill=part)

    def ring(self, part: int, u: float, v: float, r: float, width: float) -> None:
        """The outline, ``width`` pixels wide, of a circle of radius ``r`` centred on ``(u, v)``."""
        self._draw.ellipse([u - r, v - r, u + r, v + r], outline=part, width=max(1, round(width)))

    def stroke(self, part: int, points: Points, width: float) -> None:
        """A polyline ``width`` pixels wide."""
        self._draw.line(points, fill=part, width=max(1, round(width)), joint="curve")

    def cast_shadow(self, points: Points) -> None:
        """Put the polygon ``points`` in shadow."""
        self._shadow_draw.polygon(points, fill=255)
