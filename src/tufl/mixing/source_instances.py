"""The :class:`~tufl.mixing.longtail.InstanceFetch` of training: source images from the class index.

Long-tail pasting asks for "a random source image containing class c";
:class:`SourceInstances` answers from the source dataset's
:class:`~tufl.data.class_index.ClassIndex`, loading the full image at the source's
training scale (its resize).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # annotations only: tufl.data imports tufl.runtime.draws
    from tufl.data.base import SegDataset
    from tufl.data.class_index import ClassIndex


class SourceInstances:
    """``fetch(class_id, generator)`` for long-tail pasting: a random source image
    containing the class, at the source's training scale (full resized image)."""

    def __init__(self, dataset: SegDataset, index: ClassIndex) -> None:
        self.dataset = dataset
        self.lists = [index.images_with(c) for c in range(index.num_classes)]

    def available(self) -> Tensor:
        return torch.tensor([len(images) > 0 for images in self.lists])

    def __call__(self, class_id: int, generator: torch.Generator) -> tuple[Tensor, Tensor] | None:
        images = self.lists[class_id]
        if not images:
            return None
        pick = images[int(torch.randint(len(images), (1,), generator=generator))]
        image, label = self.dataset.load(pick)
        assert label is not None
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous(), torch.from_numpy(label.astype(np.int64))
