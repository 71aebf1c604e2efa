"""One whole scene: drawn as an instance map, then rendered to an RGB image and a label map."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from tufl.demo.render.camera import sample_camera
from tufl.demo.render.canvas import Canvas
from tufl.demo.render.domains import DOMAIN_STYLES, Domain, DomainStyle, Look, uniform
from tufl.demo.render.draw_ground import draw_building_shadows, draw_ground
from tufl.demo.render.draw_road_users import draw_ego_hood
from tufl.demo.render.draw_roadside import draw_block, draw_skyline
from tufl.demo.render.label_ids import SHADOW_RECEIVERS
from tufl.demo.render.placement import (
    paint_far_to_near,
    place_edge_structures,
    place_furniture,
    place_park,
    place_people,
    place_traffic,
)
from tufl.demo.render.street import sample_blocks, sample_street


def render_scene(domain: Domain, size: tuple[int, int],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random scene of ``domain`` at ``size = (width, height)``.

    Returns the RGB image (``uint8 [H, W, 3]``) and its Cityscapes label ids
    (``uint8 [H, W]``); the same generator state gives the same scene.
    """
    if domain not in DOMAIN_STYLES:
        raise ValueError(f"unknown domain {domain!r}; expected one of {sorted(DOMAIN_STYLES)}")
    style = DOMAIN_STYLES[domain]
    canvas = draw_scene(style, size, rng)
    return render_image(canvas, style.look, rng), label_map(canvas)


def draw_scene(style: DomainStyle, size: tuple[int, int], rng: np.random.Generator) -> Canvas:
    """Draw one street scene of ``style`` as an instance map (painter's algorithm)."""
    layout = style.layout
    cam = sample_camera(layout, size, rng)
    cv = Canvas(cam, style.look.materials, rng)
    street = sample_street(layout, rng)
    blocks = sample_blocks(layout, street, rng)
    z_min = cam.nearest_visible_depth() * (1.15 if layout.ego_hood else 0.95)

    draw_ground(cv, street, rng)
    draw_building_shadows(cv, blocks, rng)
    draw_skyline(cv, layout, rng)
    for block in sorted(blocks, key=lambda b: (b.side != 0, -b.start)):
        draw_block(cv, block, rng)
    paint_far_to_near(place_park(cv, layout, street, z_min, rng))
    for paint in place_edge_structures(cv, street, rng):
        paint()
    paint_far_to_near(place_traffic(cv, layout, street, z_min, rng)
                      + place_people(cv, layout, street, z_min, rng)
                      + place_furniture(cv, layout, street, z_min, rng))
    if layout.ego_hood:
        draw_ego_hood(cv, rng)
    return cv


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-scale value noise with features about ``cell`` pixels wide."""
    if cell <= 1.0:
        return rng.standard_normal((height, width), dtype=np.float32)
    gh, gw = int(np.ceil(height / cell)) + 2, int(np.ceil(width / cell)) + 2
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    up = Image.fromarray(grid).resize((int(gw * cell), int(gh * cell)), Image.Resampling.BICUBIC)
    return np.asarray(up, dtype=np.float32)[:height, :width] * 0.8


def render_image(canvas: Canvas, look: Look, rng: np.random.Generator) -> np.ndarray:
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
    on_ground = np.isin(table[:, 0], SHADOW_RECEIVERS).astype(np.float32)
    shadow = np.asarray(shadow_img, dtype=np.float32) / 255.0 * on_ground[ids]
    factor *= 1.0 - look.shadow_strength * shadow
    cast = np.asarray(look.colour_cast, dtype=np.float32) * (
        1.0 + rng.uniform(-look.cast_jitter, look.cast_jitter, size=3).astype(np.float32))
    rgb = rgb * (factor * uniform(rng, look.brightness))[..., None] * cast
    grey = rgb.mean(axis=-1, keepdims=True)
    rgb = grey + uniform(rng, look.saturation) * (rgb - grey)
    rgb = 255.0 * (np.clip(rgb, 0.0, 255.0) / 255.0) ** uniform(rng, look.gamma)
    vignette = uniform(rng, look.vignette)
    if vignette > 0:
        yy, xx = np.ogrid[-1.0:1.0:h * 1j, -1.0:1.0:w * 1j]
        rgb *= (1.0 - vignette * (xx ** 2 + yy ** 2) / 2.0).astype(np.float32)[..., None]
    image = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))
    blur = uniform(rng, look.blur_px) * scale
    if blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    out = np.asarray(image, dtype=np.float32)
    sigma = uniform(rng, look.noise_sigma)
    if sigma > 0:
        out = out + rng.normal(0.0, sigma, size=out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def label_map(canvas: Canvas) -> np.ndarray:
    """``uint8 [H, W]`` map of Cityscapes label ids of a drawn scene."""
    labels = np.asarray([row[0] for row in canvas.table], dtype=np.uint8)
    return labels[np.asarray(canvas.ids)]
