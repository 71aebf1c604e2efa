"""DeepLabV2: dilated ResNet-101 (output stride 8) with a summed-ASPP classifier.

Backbone as in the original DeepLab: blocks 3/4/23/3, the stride of a bottleneck in
its first 1x1 convolution, dilation 2 in ``layer3`` and 4 in ``layer4``, Caffe-style
``ceil_mode`` max-pool.

Classifier: parallel 3x3 convolutions with different dilations whose outputs are
*summed*. ``(6, 12, 18, 24)`` is the published DeepLabV2 head. ``(6, 12)``
reproduces what the AdaptSegNet/DACS code (and the many repositories derived from
it) actually computes: its classifier returns from inside the loop over branches,
so only the first two dilations are ever used. Some published UDA baselines were
trained that way; pick it to compare with them.

With ``multi_level=True`` a second classifier on ``layer3`` produces an auxiliary
map (the multi-level setting of ADVENT/AdaptSegNet), returned in training mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from tufl.models.network import SegNetwork
from tufl.models.resnet import ResNet


class SummedASPP(nn.Module):
    """Parallel dilated 3x3 convolutions to ``num_classes`` channels, summed."""

    def __init__(self, in_channels: int, num_classes: int, dilations: Sequence[int]) -> None:
        super().__init__()
        if not dilations:
            raise ValueError("SummedASPP needs at least one dilation")
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=d, dilation=d, bias=True) for d in dilations
        )
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class DeepLabV2(SegNetwork):
    """Returns ``[main]`` in eval mode and ``[main, aux_layer3]`` in training mode
    when ``multi_level`` is set; logits at 1/8 of the input resolution."""

    arch: ClassVar[str] = "deeplabv2"

    def __init__(self, num_classes: int, dilations: Sequence[int] = (6, 12, 18, 24),
                 multi_level: bool = False, depth: int = 101) -> None:
        super().__init__()
        self.backbone = ResNet(depth, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                               stride_in_1x1=True, ceil_mode=True)
        c3, c4 = self.backbone.channels[2], self.backbone.channels[3]
        self.classifier = SummedASPP(c4, num_classes, dilations)
        self.aux_classifier = SummedASPP(c3, num_classes, dilations) if multi_level else None

    @classmethod
    def from_config(cls, cfg: Any, training: bool) -> DeepLabV2:
        return cls(cfg.num_classes, cfg.aspp_dilations, multi_level=cfg.multi_level and training)

    @classmethod
    def config_problems(cls, cfg: Any) -> list[str]:
        return []

    @property
    def num_outputs(self) -> int:
        return 1 + (self.aux_classifier is not None)

    def forward(self, x: Tensor) -> list[Tensor]:
        _, _, f3, f4 = self.backbone(x)
        maps = [self.classifier(f4)]
        if self.training and self.aux_classifier is not None:
            maps.append(self.aux_classifier(f3))
        return maps
