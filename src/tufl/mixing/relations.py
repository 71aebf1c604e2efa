"""Class relations: classes that are pasted together with a class.

A rider without its bicycle, or a traffic sign without its pole, pasted into
another scene gives an implausible image and a label that contradicts its
surroundings. When relations are enabled, selecting a class for pasting also
selects the related classes present in the same source image.

Relations are one hop: selecting ``bicycle`` brings ``rider`` along, but not
``motorcycle`` through ``rider``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tufl.data.labels import class_names

# Unordered pairs of related classes, by name. A pair whose classes are not both
# in a class set (e.g. ``pole`` in the 13-class set) is left out of that set.
RELATED_CLASS_PAIRS: tuple[tuple[str, str], ...] = (
    ("rider", "bicycle"),
    ("rider", "motorcycle"),
    ("pole", "traffic light"),
    ("pole", "traffic sign"),
)


def relation_matrix(num_classes: int, device: torch.device | str | None = None) -> Tensor:
    """Symmetric ``[C, C]`` bool matrix: ``R[i, j]`` means selecting ``i`` also selects ``j``.

    Built from :data:`RELATED_CLASS_PAIRS` and the class names of the 19-, 16- or
    13-class set; the diagonal is False.
    """
    names = class_names(num_classes)
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.bool)
    for a, b in RELATED_CLASS_PAIRS:
        if a in names and b in names:
            i, j = names.index(a), names.index(b)
            matrix[i, j] = True
            matrix[j, i] = True
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
