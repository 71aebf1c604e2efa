"""BiSeNet (V1) with a ResNet-18 context path.

* Spatial path: three stride-2 convolutions (1/8 resolution, rich detail).
* Context path: ResNet-18; attention refinement modules (ARM) on the 1/16 and 1/32
  features, plus a global-average context vector added to the 1/32 branch; each
  branch is upsampled by two and refined by a 3x3 convolution.
* Feature fusion module (FFM): concatenation, 1x1 conv, channel attention.
* Heads: the main head on the fused 1/8 features, and two auxiliary heads on the
  context branches built from the 1/16 and 1/32 features, used for deep
  supervision in training only (they are not even built for inference models).

The branches that work on globally pooled ``1x1`` features (ARM attention, global
context) use a biased convolution instead of BatchNorm, so training works with one
image per GPU (the authors' BiSeNet setting), where BatchNorm over a single value
per channel is undefined.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tufl.models.network import SegNetwork
from tufl.models.resnet import ResNet


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class SpatialPath(nn.Module):
    def __init__(self, width: int = 64, out_channels: int = 128) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            ConvBNReLU(3, width, 7, 2),
            ConvBNReLU(width, width, 3, 2),
            ConvBNReLU(width, width, 3, 2),
            ConvBNReLU(width, out_channels, 1, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class AttentionRefinement(nn.Module):
    """3x3 conv, then re-weighting of its channels by a global-pooling attention."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout, 3)
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cout, cout, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        return feat * self.attention(feat)


class ContextPath(nn.Module):
    """Returns the refined context features at 1/8 (from 1/16) and 1/16 (from 1/32)."""

    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.backbone = ResNet(18)
        c16, c32 = self.backbone.channels[2], self.backbone.channels[3]
        self.arm16 = AttentionRefinement(c16, channels)
        self.arm32 = AttentionRefinement(c32, channels)
        self.global_context = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(c32, channels, 1), nn.ReLU(inplace=True)
        )
        self.refine32 = ConvBNReLU(channels, channels, 3)
        self.refine16 = ConvBNReLU(channels, channels, 3)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _, f8, f16, f32 = self.backbone(x)
        branch32 = self.arm32(f32) + self.global_context(f32)
        up32 = self.refine32(F.interpolate(branch32, size=f16.shape[-2:], mode="nearest"))
        branch16 = self.arm16(f16) + up32
        up16 = self.refine16(F.interpolate(branch16, size=f8.shape[-2:], mode="nearest"))
        return up16, up32


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int, reduction: int = 4) -> None:
        super().__init__()
        self.fuse = ConvBNReLU(cin, cout, 1)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(cout, cout // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout // reduction, cout, 1),
            nn.Sigmoid(),
        )

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        feat = self.fuse(torch.cat((spatial, context), dim=1))
        return feat + feat * self.attention(feat)


class SegHead(nn.Sequential):
    def __init__(self, cin: int, mid: int, num_classes: int) -> None:
        super().__init__(ConvBNReLU(cin, mid, 3), nn.Conv2d(mid, num_classes, 1))


class BiSeNet(SegNetwork):
    """Returns ``[main]`` in eval mode, ``[main, aux16, aux32]`` in training mode
    (when built with ``aux_heads``); logits at 1/8, 1/8 and 1/16 of the input."""

    arch: ClassVar[str] = "bisenet"

    def __init__(self, num_classes: int, aux_heads: bool = True) -> None:
        super().__init__()
        self.context_path = ContextPath(128)
        self.spatial_path = SpatialPath(64, 128)
        self.ffm = FeatureFusion(256, 256)
        self.head = SegHead(256, 256, num_classes)
        self.aux_head16 = SegHead(128, 64, num_classes) if aux_heads else None
        self.aux_head32 = SegHead(128, 64, num_classes) if aux_heads else None
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d) and not name.startswith("context_path.backbone"):
                nn.init.kaiming_normal_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @classmethod
    def from_config(cls, cfg: Any, training: bool) -> BiSeNet:
        return cls(cfg.num_classes, aux_heads=training)

    def backbone_module(self) -> nn.Module:
        return self.context_path.backbone

    @property
    def num_outputs(self) -> int:
        return 3 if self.aux_head16 is not None else 1

    def forward(self, x: Tensor) -> list[Tensor]:
        ctx16, ctx32 = self.context_path(x)
        fused = self.ffm(self.spatial_path(x), ctx16)
        maps = [self.head(fused)]
        if self.training and self.aux_head16 is not None and self.aux_head32 is not None:
            maps += [self.aux_head16(ctx16), self.aux_head32(ctx32)]
        return maps
