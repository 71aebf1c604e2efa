"""DAFormer (Hoyer et al., CVPR 2022): a MiT encoder with the context-aware fusion decoder.

Decoder (DAFormer's ``daformer_sepaspp`` head, its published configuration):

* each of the four encoder outputs is embedded to 256 channels by a linear layer (a 1x1
  convolution with bias, no norm or activation) and resized bilinearly to the 1/4
  resolution of the first;
* the concatenated 1024 channels go through an ASPP-like fusion without image pooling:
  parallel branches with dilations 1, 6, 12, 18 (dilation 1: a 1x1 convolution; the
  others: depthwise-separable, a 3x3 depthwise convolution with that dilation, then a
  1x1 pointwise one), each convolution followed by BatchNorm and ReLU, 256 channels each;
* a 3x3 convolution + BatchNorm + ReLU (the bottleneck) fuses the four branches to 256;
* dropout (channel-wise, 0.1) and a 1x1 classifier.

Logits come out at 1/4 of the input resolution; :class:`~tufl.models.segmentor.Segmentor`
upsamples them. The decoder is always initialised fresh (the MiT checkpoints are ImageNet
encoders).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tufl.models.mit import MIT_VARIANTS, build_mit
from tufl.models.network import SegNetwork

EMBED_DIM = 256
FUSION_DILATIONS = (1, 6, 12, 18)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation, groups=groups,
                      bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class SeparableConvBNReLU(nn.Sequential):
    """3x3 depthwise (dilated) convolution, then 1x1 pointwise; BatchNorm + ReLU after each."""

    def __init__(self, cin: int, cout: int, dilation: int) -> None:
        super().__init__(ConvBNReLU(cin, cin, 3, dilation, groups=cin), ConvBNReLU(cin, cout, 1))


class ContextFusion(nn.Module):
    """Parallel dilated branches over the concatenated multi-level features, then a 3x3 bottleneck."""

    def __init__(self, cin: int, cout: int, dilations: Sequence[int] = FUSION_DILATIONS) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            ConvBNReLU(cin, cout, 1) if d == 1 else SeparableConvBNReLU(cin, cout, d) for d in dilations
        )
        self.bottleneck = ConvBNReLU(len(dilations) * cout, cout, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneck(torch.cat([branch(x) for branch in self.branches], dim=1))


class DAFormerHead(nn.Module):
    def __init__(self, in_channels: Sequence[int], num_classes: int, embed_dim: int = EMBED_DIM,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.ModuleList(nn.Conv2d(c, embed_dim, 1) for c in in_channels)
        self.fusion = ContextFusion(len(in_channels) * embed_dim, embed_dim)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)
        for m in self.fusion.modules():
            if isinstance(m, nn.Conv2d):  # He initialisation (fan-out) of the ReLU convolutions
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        size = features[0].shape[-2:]
        embedded = []
        for embed, feature in zip(self.embed, features):
            e = embed(feature)
            if e.shape[-2:] != size:
                e = F.interpolate(e, size=size, mode="bilinear", align_corners=False)
            embedded.append(e)
        return self.classifier(self.dropout(self.fusion(torch.cat(embedded, dim=1))))


class DAFormer(SegNetwork):
    """MiT encoder + DAFormer decoder; returns ``[logits]`` at 1/4 resolution (one head)."""

    arch: ClassVar[str] = "daformer"
    weight_family: ClassVar[str] = "mit"
    checkpoint_keys: ClassVar[tuple[str, ...]] = ("arch", "num_classes", "backbone")

    def __init__(self, num_classes: int, backbone: str = "mit_b5", drop_path_rate: float = 0.1) -> None:
        super().__init__()
        self.backbone = build_mit(backbone, drop_path_rate)
        self.head = DAFormerHead(self.backbone.channels, num_classes)

    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.head(self.backbone(x))]

    @classmethod
    def from_config(cls, cfg: Any, training: bool) -> DAFormer:
        return cls(cfg.num_classes, cfg.backbone, cfg.drop_path_rate)

    @classmethod
    def weights_hint(cls, cfg: Any) -> str:
        spec = MIT_VARIANTS[cfg.backbone]
        return (f"the network is model.backbone={cfg.backbone} (stage widths {list(spec.embed_dims)}, "
                f"depths {list(spec.depths)}); is the file another MiT variant?")
