"""Tiny segmentation networks for tests of inference, prediction and export."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tufl.models.segmentor import INPUT_CONVENTIONS, Segmentor


class ConvHead(nn.Module):
    """One 3x3 convolution to ``num_classes`` logits at full resolution (seeded weights)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)

    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.conv(x)]


def conv_segmentor(num_classes: int = 19) -> Segmentor:
    """A :class:`ConvHead` behind the Segmentor contract (ImageNet RGB normalisation)."""
    return Segmentor(ConvHead(num_classes), num_classes, INPUT_CONVENTIONS["imagenet_rgb"])
