"""The output contract shared by every network, and input normalisation.

Every tufl network is wrapped in a :class:`Segmentor`. It takes a batch of RGB
images with values in ``[0, 255]`` (``uint8`` or float, ``[B, 3, H, W]``), applies
the input convention of its weights (channel order, mean, std) on the device, and
returns a :class:`SegOutput`:

* ``main``: logits ``[B, C, H, W]`` at the resolution of the input;
* ``aux``: a tuple of auxiliary logit maps of the same shape, present only in
  training mode (DeepLabV2 multi-level head, BiSeNet deep-supervision heads).

Losses and the trainer only ever see ``SegOutput.heads()``, so no code
special-cases a network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SegOutput(NamedTuple):
    """Logits of a segmentation network at input resolution."""

    main: Tensor
    aux: tuple[Tensor, ...] = ()

    def heads(self) -> tuple[Tensor, ...]:
        """The main map followed by the auxiliary maps."""
        return (self.main, *self.aux)


@dataclass(frozen=True)
class InputConvention:
    """How a set of weights expects its input to be normalised.

    ``mean`` and ``std`` are in 0..255 units and in the *model's* channel order.
    """

    name: str
    bgr: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


INPUT_CONVENTIONS: dict[str, InputConvention] = {
    # torchvision ImageNet weights: RGB in [0, 1], ImageNet mean/std.
    "imagenet_rgb": InputConvention(
        "imagenet_rgb", False, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    ),
    # Caffe-era DeepLab initialisation (DeepLab_resnet_pretrained_imagenet.pth):
    # BGR, per-channel mean subtracted, no scaling.
    "caffe_bgr": InputConvention(
        "caffe_bgr", True, (104.00698793, 116.66876762, 122.67891434), (1.0, 1.0, 1.0)
    ),
}


class Segmentor(nn.Module):
    """Wraps a network that returns feature-resolution logits into the contract above.

    ``net(x)`` must return a sequence of logit maps, main first; in eval mode only
    the main map is used.
    """

    def __init__(self, net: nn.Module, num_classes: int, convention: InputConvention) -> None:
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        self.convention = convention
        self.register_buffer("pixel_mean", torch.tensor(convention.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(convention.std).view(1, 3, 1, 1), persistent=False)

    @property
    def num_outputs(self) -> int:
        """Logit maps the network returns in training mode (main + auxiliary heads)."""
        return self.net.num_outputs

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split into the pretrained ``backbone`` and the ``head``
        (everything else), which usually gets a larger learning rate."""
        backbone = [p for p in self.net.backbone_parameters() if p.requires_grad]
        seen = {id(p) for p in backbone}
        head = [p for p in self.parameters() if p.requires_grad and id(p) not in seen]
        return {"backbone": backbone, "head": head}

    def normalize(self, images: Tensor) -> Tensor:
        """RGB ``[0, 255]`` images -> the network's input convention (float)."""
        x = images.to(dtype=self.pixel_mean.dtype)
        if self.convention.bgr:
            x = x.flip(1)
        return (x - self.pixel_mean) / self.pixel_std

    def forward(self, images: Tensor) -> SegOutput:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
        size = images.shape[-2:]
        x = self.normalize(images)
        if images.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        maps = self.net(x)
        maps = [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps]
        if not self.training:
            return SegOutput(maps[0])
        return SegOutput(maps[0], tuple(maps[1:]))
