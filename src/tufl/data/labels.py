"""Class definitions and label-id mappings for 19, 16 and 13 Cityscapes-style classes.

Every label map handled by tufl uses *train ids* ``0..C-1`` of one of three class
sets, with ``IGNORE_INDEX`` (255) for pixels that are not evaluated:

* 19 classes: the Cityscapes benchmark classes (GTA5 -> Cityscapes).
* 16 classes: the 19 without terrain, truck and train (SYNTHIA -> Cityscapes).
* 13 classes: the 16 without wall, fence and pole (SYNTHIA mIoU*, Cross-City).

The raw datasets store other encodings (Cityscapes label ids, SYNTHIA ids); the
look-up tables built here turn a raw id map into train ids with one indexing
operation.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

import numpy as np

IGNORE_INDEX = 255

# The 19 Cityscapes train classes in train-id order, with the Cityscapes label id
# each one comes from and its colour in the official palette.
CITYSCAPES_19: tuple[tuple[str, int, tuple[int, int, int]], ...] = (
    ("road", 7, (128, 64, 128)),
    ("sidewalk", 8, (244, 35, 232)),
    ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)),
    ("fence", 13, (190, 153, 153)),
    ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)),
    ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)),
    ("terrain", 22, (152, 251, 152)),
    ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)),
    ("rider", 25, (255, 0, 0)),
    ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)),
    ("bus", 28, (0, 60, 100)),
    ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)),
    ("bicycle", 33, (119, 11, 32)),
)

_DROPPED_FOR_16 = ("terrain", "truck", "train")
_DROPPED_FOR_13 = _DROPPED_FOR_16 + ("wall", "fence", "pole")

# SYNTHIA-RAND-CITYSCAPES class ids (first channel of GT/LABELS/*.png), from the
# dataset's README: 0 void, 1 sky, 2 building, 3 road, 4 sidewalk, 5 fence,
# 6 vegetation, 7 pole, 8 car, 9 traffic sign, 10 pedestrian, 11 bicycle,
# 12 motorcycle, 13 parking-slot, 14 road-work, 15 traffic light, 16 terrain,
# 17 rider, 18 truck, 19 bus, 20 train, 21 wall, 22 lanemarking.
# Classes without a Cityscapes counterpart (void, parking-slot, road-work,
# lanemarking) are ignored, as in the literature.
SYNTHIA_TO_NAME: dict[int, str] = {
    1: "sky",
    2: "building",
    3: "road",
    4: "sidewalk",
    5: "fence",
    6: "vegetation",
    7: "pole",
    8: "car",
    9: "traffic sign",
    10: "person",
    11: "bicycle",
    12: "motorcycle",
    15: "traffic light",
    16: "terrain",
    17: "rider",
    18: "truck",
    19: "bus",
    20: "train",
    21: "wall",
}

SUPPORTED_NUM_CLASSES = (19, 16, 13)
# Class counts a model may have: the sets above, or a class definition file's
# (tufl.data.class_set; train ids 0..254, 255 being the ignore id).
MIN_CLASSES, MAX_CLASSES = 2, 255


def class_names(num_classes: int) -> tuple[str, ...]:
    """Names of the classes of a 19-, 16- or 13-class model, in train-id order."""
    _check_num_classes(num_classes)
    dropped = {19: (), 16: _DROPPED_FOR_16, 13: _DROPPED_FOR_13}[num_classes]
    return tuple(name for name, _, _ in CITYSCAPES_19 if name not in dropped)


def is_cityscapes_set(num_classes: int) -> bool:
    """Whether ``num_classes`` is one of the 19/16/13 Cityscapes-style class sets."""
    return num_classes in SUPPORTED_NUM_CLASSES


def palette(num_classes: int) -> np.ndarray:
    """``(256, 3)`` uint8 colour table: train id -> colour, black elsewhere.

    Cityscapes colours for 19/16/13 classes; for another count (a class definition
    file's, whose own colours :meth:`ClassSet.palette` gives) distinct generated colours.
    """
    table = np.zeros((256, 3), dtype=np.uint8)
    if not is_cityscapes_set(num_classes):
        if not MIN_CLASSES <= num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be {MIN_CLASSES}..{MAX_CLASSES}, got {num_classes}")
        table[:num_classes] = np.asarray(generic_palette(num_classes), dtype=np.uint8)
        return table
    colours = {name: rgb for name, _, rgb in CITYSCAPES_19}
    for train_id, name in enumerate(class_names(num_classes)):
        table[train_id] = colours[name]
    return table


def generic_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct, deterministic colours for classes without one (golden-angle hues)."""
    colours = []
    for i in range(num_classes):
        r, g, b = colorsys.hsv_to_rgb((i * 0.381966) % 1.0, 0.75, 0.95 if i % 2 == 0 else 0.7)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(colours)


def train_id(name: str, num_classes: int) -> int:
    """Train id of a class name in the given class set (KeyError if absent)."""
    names = class_names(num_classes)
    if name not in names:
        raise KeyError(f"class {name!r} is not one of the {num_classes} classes")
    return names.index(name)


def _check_num_classes(num_classes: int) -> None:
    if num_classes not in SUPPORTED_NUM_CLASSES:
        raise ValueError(
            f"num_classes must be one of {SUPPORTED_NUM_CLASSES}, got {num_classes}"
        )


def _lut_from_names(raw_to_name: dict[int, str], num_classes: int, size: int) -> np.ndarray:
    names = class_names(num_classes)
    lut = np.full(size, IGNORE_INDEX, dtype=np.uint8)
    for raw_id, name in raw_to_name.items():
        if name in names:
            lut[raw_id] = names.index(name)
    lut.setflags(write=False)
    return lut


@lru_cache(maxsize=None)
def cityscapes_id_lut(num_classes: int) -> np.ndarray:
    """Look-up table (256 entries): Cityscapes label id -> train id of the class set.

    Label ids not in the class set (parking, rail track, caravan, ...) map to 255.
    The same table serves GTA5, whose labels hold Cityscapes label ids.
    """
    return _lut_from_names({cid: name for name, cid, _ in CITYSCAPES_19}, num_classes, 256)


@lru_cache(maxsize=None)
def synthia_id_lut(num_classes: int) -> np.ndarray:
    """Look-up table (65536 entries): SYNTHIA class id -> train id of the class set."""
    return _lut_from_names(SYNTHIA_TO_NAME, num_classes, 65536)


@lru_cache(maxsize=None)
def train_id_to_label_id(num_classes: int) -> np.ndarray:
    """Look-up table (256 entries): train id -> Cityscapes label id (0 for ignore).

    Used to write predictions in the format of the Cityscapes benchmark server.
    """
    ids = {name: cid for name, cid, _ in CITYSCAPES_19}
    lut = np.zeros(256, dtype=np.uint8)
    for tid, name in enumerate(class_names(num_classes)):
        lut[tid] = ids[name]
    lut.setflags(write=False)
    return lut


@lru_cache(maxsize=None)
def subset_indices(from_classes: int, to_classes: int) -> tuple[int, ...]:
    """Train ids, in the ``from_classes`` set, of the classes of ``to_classes``.

    ``subset_indices(16, 13)`` gives the 13 columns of a 16-class confusion matrix
    that the mIoU* of the SYNTHIA benchmark averages over.
    """
    src = class_names(from_classes)
    dst = class_names(to_classes)
    missing = [n for n in dst if n not in src]
    if missing:
        raise ValueError(f"classes {missing} of the {to_classes}-set are not in the {from_classes}-set")
    return tuple(src.index(n) for n in dst)


@lru_cache(maxsize=None)
def remap_lut(from_classes: int, to_classes: int) -> np.ndarray:
    """Look-up table (256 entries): train id of one class set -> train id of another.

    Classes that the target set lacks become 255; 255 stays 255.
    """
    src = class_names(from_classes)
    dst = class_names(to_classes)
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for i, name in enumerate(src):
        if name in dst:
            lut[i] = dst.index(name)
    lut.setflags(write=False)
    return lut
