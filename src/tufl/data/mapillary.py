"""Mapillary Vistas v1.2 (Neuhold et al., ICCV 2017), read as the 19 Cityscapes classes.

Layout of the research-edition download (the root holds ``config.json``)::

    {training,validation}/images/{key}.jpg     18,000 / 2,000 images, mixed sizes
    {training,validation}/labels/{key}.png     one palette PNG per image, same key
    testing/images/{key}.jpg                   5,000 images, no public labels

The v2.0 download keeps the v1.2 labels under ``{training,validation}/v1.2/labels/``
(next to ``v2.0/labels`` with 124 classes, not read here); that folder is used
when present. ``instances/`` and ``panoptic/`` are not read. The images are large
(up to several thousand pixels wide) and of mixed sizes and aspect ratios: set ``resize``
(width, height) to load them at one size; evaluation scores each image at the
size of its label file.

Label encoding: 8-bit palette (``P``) PNGs whose pixel *indices* are the 66 v1.2
classes in the order of ``config.json``'s ``labels`` list (0 Bird ... 64 Ego
Vehicle, 65 Unlabeled; 65 is not evaluated). Sources for the class list: the
dataset's ``config.json`` (v1.2) as reproduced by Mask2Former/MaskFormer
(``mask_former/data/datasets/register_mapillary_vistas.py``: 66 entries, the last
one ``void--unlabeled`` with ``evaluate: false``) and mmsegmentation
(``mmseg/datasets/mapillary.py``, v1 class names in the same order).

Vistas has no official Cityscapes mapping. :data:`VISTAS_TO_CITYSCAPES` below maps
each v1.2 class to the Cityscapes class whose definition covers it (Cityscapes
"road" includes lane markings, bicycle lanes and manholes; "sidewalk" includes the
curb; "pole" includes sign frames and street lights); every class not in the table
is ignored (255). Sources: the Vistas -> Cityscapes table of unipercept
(github.com/kurt-stolle/unipercept, ``data/sets/vistas.py``,
``CLASSES_AS_CITYSCAPES``), which this table follows entry by entry, checked
against the one of LADD/FedDrive (``Mapillary.labels2train``), which differs only
in ignoring crosswalks, mountain and manhole and in counting bike lanes as sidewalk.

=== ========================== ============== ===
id  Vistas class               Cityscapes     tid
=== ========================== ============== ===
2   Curb                       sidewalk       1
3   Fence                      fence          4
6   Wall                       wall           3
7   Bike Lane                  road           0
8   Crosswalk - Plain          road           0
9   Curb Cut                   sidewalk       1
11  Pedestrian Area            sidewalk       1
13  Road                       road           0
14  Service Lane               road           0
15  Sidewalk                   sidewalk       1
17  Building                   building       2
19  Person                     person         11
20  Bicyclist                  rider          12
21  Motorcyclist               rider          12
22  Other Rider                rider          12
23  Lane Marking - Crosswalk   road           0
24  Lane Marking - General     road           0
25  Mountain                   terrain        9
26  Sand                       terrain        9
27  Sky                        sky            10
29  Terrain                    terrain        9
30  Vegetation                 vegetation     8
41  Manhole                    road           0
43  Pothole                    road           0
44  Street Light               pole           5
45  Pole                       pole           5
46  Traffic Sign Frame         pole           5
47  Utility Pole               pole           5
48  Traffic Light              traffic light  6
50  Traffic Sign (Front)       traffic sign   7
52  Bicycle                    bicycle        18
54  Bus                        bus            15
55  Car                        car            13
57  Motorcycle                 motorcycle     17
58  On Rails                   train          16
61  Truck                      truck          14
=== ========================== ============== ===

(tid = 19-class train id.) Ignored: 0 Bird, 1 Ground Animal, 4 Guard Rail, 5 Barrier,
10 Parking, 12 Rail Track, 16 Bridge, 18 Tunnel, 28 Snow, 31 Water, 32 Banner,
33 Bench, 34 Bike Rack, 35 Billboard, 36 Catch Basin, 37 CCTV Camera, 38 Fire
Hydrant, 39 Junction Box, 40 Mailbox, 42 Phone Booth, 49 Traffic Sign (Back),
51 Trash Can, 53 Boat, 56 Caravan, 59 Other Vehicle, 60 Trailer, 62 Wheeled Slow,
63 Car Mount, 64 Ego Vehicle, 65 Unlabeled (Cityscapes, too, ignores guard rail,
parking, rail track, bridge, tunnel, caravan and trailer).

``split``: train (= training), val (= validation; labels required) or test (= testing,
no labels).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from tufl.data.base import SegDataset, SplitLayout
from tufl.data.io import read_index_png
from tufl.data.labels import IGNORE_INDEX, class_names

# The 66 Mapillary Vistas v1.2 classes (readable names), index = label value.
VISTAS_V12_CLASSES: tuple[str, ...] = (
    "Bird", "Ground Animal", "Curb", "Fence", "Guard Rail", "Barrier", "Wall", "Bike Lane",
    "Crosswalk - Plain", "Curb Cut", "Parking", "Pedestrian Area", "Rail Track", "Road", "Service Lane",
    "Sidewalk", "Bridge", "Building", "Tunnel", "Person", "Bicyclist", "Motorcyclist", "Other Rider",
    "Lane Marking - Crosswalk", "Lane Marking - General", "Mountain", "Sand", "Sky", "Snow", "Terrain",
    "Vegetation", "Water", "Banner", "Bench", "Bike Rack", "Billboard", "Catch Basin", "CCTV Camera",
    "Fire Hydrant", "Junction Box", "Mailbox", "Manhole", "Phone Booth", "Pothole", "Street Light", "Pole",
    "Traffic Sign Frame", "Utility Pole", "Traffic Light", "Traffic Sign (Back)", "Traffic Sign (Front)",
    "Trash Can", "Bicycle", "Boat", "Bus", "Car", "Caravan", "Motorcycle", "On Rails", "Other Vehicle",
    "Trailer", "Truck", "Wheeled Slow", "Car Mount", "Ego Vehicle", "Unlabeled",
)

# Vistas v1.2 class name -> Cityscapes class name (the table of the module docstring).
VISTAS_TO_CITYSCAPES: dict[str, str] = {
    "Curb": "sidewalk", "Fence": "fence", "Wall": "wall", "Bike Lane": "road", "Crosswalk - Plain": "road",
    "Curb Cut": "sidewalk", "Pedestrian Area": "sidewalk", "Road": "road", "Service Lane": "road",
    "Sidewalk": "sidewalk", "Building": "building", "Person": "person", "Bicyclist": "rider",
    "Motorcyclist": "rider", "Other Rider": "rider", "Lane Marking - Crosswalk": "road",
    "Lane Marking - General": "road", "Mountain": "terrain", "Sand": "terrain", "Sky": "sky",
    "Terrain": "terrain", "Vegetation": "vegetation", "Manhole": "road", "Pothole": "road",
    "Street Light": "pole", "Pole": "pole", "Traffic Sign Frame": "pole", "Utility Pole": "pole",
    "Traffic Light": "traffic light", "Traffic Sign (Front)": "traffic sign", "Bicycle": "bicycle",
    "Bus": "bus", "Car": "car", "Motorcycle": "motorcycle", "On Rails": "train", "Truck": "truck",
}

MAPILLARY_PARTS = {"train": "training", "val": "validation", "test": "testing"}


@lru_cache(maxsize=None)
def vistas_lut(num_classes: int) -> np.ndarray:
    """Look-up table (256 entries): Vistas v1.2 label value -> train id of the class set (255 = ignore)."""
    names = class_names(num_classes)
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for value, vistas in enumerate(VISTAS_V12_CLASSES):
        target = VISTAS_TO_CITYSCAPES.get(vistas)
        if target in names:
            lut[value] = names.index(target)
    lut.setflags(write=False)
    return lut


class MapillaryDataset(SegDataset):
    """Mapillary Vistas v1.2 mapped to the Cityscapes classes (see module docstring)."""

    name = "mapillary"
    check_split = "val"
    default_split = "val"
    raw_label_ids = frozenset(range(len(VISTAS_V12_CLASSES)))
    root_title = "Mapillary Vistas"
    label_suffix = ".png"
    image_example = "{images}/<key>.jpg"
    read_raw_label = staticmethod(read_index_png)
    train_id_lut = staticmethod(vistas_lut)

    @classmethod
    def locate(cls, root: Path, split: str) -> SplitLayout:
        part = MAPILLARY_PARTS.get(split, split)
        if part not in MAPILLARY_PARTS.values():
            raise ValueError(f"mapillary: split must be one of {tuple(MAPILLARY_PARTS)}, got {split!r}")
        labels = None
        if part != "testing":
            labels = f"{part}/v1.2/labels" if (root / part / "v1.2" / "labels").is_dir() else f"{part}/labels"
        return SplitLayout(root, f"{part}/images", labels, labels_required=part == "validation",
                           split=part)
