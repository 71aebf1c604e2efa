"""ResNet backbones (18 and 101) with the layer names of the common checkpoints.

Parameter and buffer names follow the usual ImageNet checkpoint layout
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ...), so both
torchvision-format files and the Caffe-derived DeepLab initialisation load without
renaming. There is no classification layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

NormLayer = Callable[[int], nn.Module]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm that always normalises with its running statistics, in train mode too.

    The statistics never change. The affine ``weight`` and ``bias`` are fixed buffers
    by default; with ``trainable_affine=True`` they are parameters that keep training
    (what calling ``eval()`` on a whole network during training amounts to). Either
    way the state has the names of ``nn.BatchNorm2d`` (``weight``, ``bias``,
    ``running_mean``, ``running_var``), so checkpoints of either kind load.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, trainable_affine: bool = False) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.trainable_affine = trainable_affine
        if trainable_affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_buffer("weight", torch.ones(num_features))
            self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, trainable_affine={self.trainable_affine}"


def freeze_batchnorm(module: nn.Module, trainable_affine: bool = False) -> nn.Module:
    """Replace every ``BatchNorm2d`` inside ``module`` by a :class:`FrozenBatchNorm2d`
    carrying the same statistics and affine parameters. Returns the module."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, child.eps, trainable_affine)
            with torch.no_grad():
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                if child.track_running_stats:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child, trainable_affine)
    return module


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, norm: NormLayer = nn.BatchNorm2d,
                 stride_in_1x1: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 bottleneck. ``stride_in_1x1`` puts the stride in the first
    1x1 convolution (original Caffe ResNet / DeepLab) instead of the 3x3."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, norm: NormLayer = nn.BatchNorm2d,
                 stride_in_1x1: bool = False) -> None:
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, s1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, s3, dilation, dilation, bias=False)
        self.bn2 = norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = norm(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """ResNet trunk returning the outputs of ``layer1`` .. ``layer4``.

    Args:
        depth: 18, 34, 50 or 101.
        strides: stride of the first block of each of the four layers.
        dilations: dilation of each of the four layers (DeepLab uses 1, 1, 2, 4).
        stride_in_1x1: stride placement in bottlenecks (True for DeepLabV2).
        ceil_mode: ``ceil_mode`` of the stem max-pool (True in Caffe/DeepLab).
    """

    def __init__(self, depth: int, strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1), stride_in_1x1: bool = False,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"unsupported ResNet depth {depth}; choose one of {sorted(_DEPTHS)}")
        block, counts = _DEPTHS[depth]
        self.depth = depth
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=ceil_mode)
        widths = (64, 128, 256, 512)
        layers = [
            self._make_layer(block, w, n, s, d, stride_in_1x1)
            for w, n, s, d in zip(widths, counts, strides, dilations)
        ]
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.channels = tuple(w * block.expansion for w in widths)  # type: ignore[attr-defined]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes: int, count: int, stride: int, dilation: int,
                    stride_in_1x1: bool) -> nn.Sequential:
        downsample = None
        out_channels = planes * block.expansion
        if stride != 1 or self.inplanes != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        blocks = [block(self.inplanes, planes, stride, dilation, downsample, stride_in_1x1=stride_in_1x1)]
        self.inplanes = out_channels
        blocks += [block(out_channels, planes, 1, dilation, stride_in_1x1=stride_in_1x1)
                   for _ in range(count - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats
