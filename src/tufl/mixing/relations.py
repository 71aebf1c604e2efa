"""Class relations: the classes pasted together with a class.

A rider without its bicycle, or a traffic sign without its pole, pasted into
another scene gives an implausible image and a label that contradicts its
surroundings. Selecting a class for pasting therefore also selects its related
classes where they are present in the same source image (or crop).

Relations are directed and one hop: ``road`` brings the vehicles standing on it,
a car does not bring the road; ``bicycle`` brings ``rider`` but not, through it,
anything related to ``rider``.

The tables are facts taken from the authors' release (``utils/paste_utils.py``,
the relation tables of its long-tail instance mixer), written as class names:
their GTA5 table for the 19-class set and their SYNTHIA table for the 16-class
set. Their 13-class (Cityscapes -> Cross-City) table is the SYNTHIA table copied
by *position*, which in the 13-class order relates e.g. ``building`` with
``vegetation``, ``sky`` and ``person``; ``positional`` reproduces it, ``by_name``
(our default) applies the SYNTHIA table by class name instead (see
docs/faithfulness.md).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

import warnings

from tufl.data.labels import class_names, is_cityscapes_set

RelationTable = Literal["by_name", "positional"]

# Authors' GTA5 table (19 classes): class -> classes pasted with it.
GTA5_RELATIONS: dict[str, tuple[str, ...]] = {
    "road": ("terrain", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"),
    "sidewalk": ("terrain", "person"),
    "wall": ("fence",),
    "fence": ("wall",),
    "pole": ("traffic light", "traffic sign"),
    "traffic light": ("pole", "traffic sign"),
    "traffic sign": ("pole", "traffic light"),
    "vegetation": ("terrain",),
    "terrain": ("vegetation",),
    "rider": ("motorcycle", "bicycle"),
    "motorcycle": ("rider", "bicycle"),
    "bicycle": ("rider", "motorcycle"),
}

# Authors' SYNTHIA table (16 classes).
SYNTHIA_RELATIONS: dict[str, tuple[str, ...]] = {
    "road": ("person", "rider", "car", "bus", "motorcycle", "bicycle"),
    "sidewalk": ("person", "rider", "motorcycle", "bicycle"),
    "building": ("pole", "traffic light", "traffic sign"),
    "pole": ("traffic light", "traffic sign"),
    "traffic light": ("pole", "traffic sign"),
    "traffic sign": ("pole", "traffic light"),
    "rider": ("motorcycle", "bicycle"),
    "motorcycle": ("rider", "bicycle"),
    "bicycle": ("rider", "motorcycle"),
}


def _named_relations(num_classes: int) -> dict[str, tuple[str, ...]]:
    return GTA5_RELATIONS if num_classes == 19 else SYNTHIA_RELATIONS


def relation_matrix(
    num_classes: int, table: RelationTable = "by_name", device: torch.device | str | None = None
) -> Tensor:
    """``[C, C]`` bool matrix: ``R[i, j]`` means selecting class ``i`` also selects ``j``.

    ``by_name``: the authors' GTA5 table for 19 classes, their SYNTHIA table for 16
    and 13 classes, by class name (pairs with a class outside the set are left out).
    ``positional``: the same for 19 and 16 classes; for 13 classes the SYNTHIA table
    applied by train id, as the authors' Cross-City code does. The diagonal is False.
    Any other class count (a class definition file's) has no relations (with a warning).
    """
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.bool)
    if table not in ("by_name", "positional"):
        raise ValueError(f"unknown relation table {table!r}; choose 'by_name' or 'positional'")
    if not is_cityscapes_set(num_classes):
        # A class definition file's classes: the tables name Cityscapes classes.
        warnings.warn(
            f"mixing: no class relations for a {num_classes}-class set (the relation tables name the "
            "19/16/13 Cityscapes classes); each class is pasted on its own",
            stacklevel=2,
        )
        return matrix.to(device) if device is not None else matrix
    names = class_names(num_classes)
    if table == "positional" and num_classes == 13:
        synthia = class_names(16)
        for source, related in SYNTHIA_RELATIONS.items():
            i = synthia.index(source)
            for target in related:
                j = synthia.index(target)
                if i < num_classes and j < num_classes:
                    matrix[i, j] = True
    else:
        for source, related in _named_relations(num_classes).items():
            for target in related:
                if source in names and target in names:
                    matrix[names.index(source), names.index(target)] = True
    return matrix.to(device) if device is not None else matrix


def add_related_classes(selected: Tensor, presence: Tensor, relations: Tensor) -> Tensor:
    """Extend a class selection with the related classes present in the same image.

    Args:
        selected: ``[B, C]`` bool, classes chosen per sample.
        presence: ``[B, C]`` bool, classes present in each sample's label.
        relations: ``[C, C]`` bool relation matrix (see :func:`relation_matrix`).

    Returns:
        ``[B, C]`` bool: ``selected`` plus every present class related to a selected one.
    """
    if selected.shape != presence.shape or relations.shape != (selected.shape[1],) * 2:
        raise ValueError(
            f"shape mismatch: selected {tuple(selected.shape)}, presence "
            f"{tuple(presence.shape)}, relations {tuple(relations.shape)}"
        )
    pulled = (selected.float() @ relations.to(selected.device).float()) > 0
    return selected | (pulled & presence)
