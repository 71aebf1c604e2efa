"""Procedural driving scenes for the built-in demo: drawn as label maps, rendered per domain.

A scene is drawn once, in perspective, as an *instance map*: every surface (a
facade, the windows of a block, a car body, a lane marking, a coat...) is an
instance that carries a Cityscapes label id and a colour drawn from its material.
The label map and the RGB image are both read off that map, so they agree pixel
for pixel. Objects are placed in a 3-D street (metres, camera at the origin
looking down +Z) and projected with a pinhole camera, so their image size follows
their depth; they are painted far to near.

The two domains differ the way a driving simulator and a real camera differ:

* ``synthetic`` (GTA5-like): flat shading, crisp edges, a saturated palette,
  sunny light with hard shadows, a wide-angle camera, wide roads, low-rise and
  high-rise buildings with gaps, palm trees, many vehicles, few pedestrians;
* ``realistic`` (Cityscapes-like): textured surfaces, muted overcast colours with
  a colour cast, soft shadows, vignetting, blur and sensor noise, a narrower
  camera on a car whose bonnet is visible (label "ego vehicle", ignored in
  training), narrower streets lined with continuous blocks, street trees, parked
  cars, trams, and many pedestrians and cyclists.

Modules: :mod:`.domains` and :mod:`.materials` (what each domain contains and
how it looks), :mod:`.camera` and :mod:`.canvas` (projection and the instance
map), :mod:`.street` (the street's cross-section and building blocks), the
``draw_*`` modules (one kind of object each), :mod:`.placement` (where objects
stand, and painting them far to near) and :mod:`.scene` (one whole scene,
rendered to an image and a label map).
"""

from tufl.demo.render.domains import Domain
from tufl.demo.render.scene import render_scene

__all__ = ["Domain", "render_scene"]
