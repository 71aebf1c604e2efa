"""The ``model`` section of a config: the network, its options and its initial weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tufl.data.labels import MAX_CLASSES, MIN_CLASSES
from tufl.models.registry import NETWORKS
from tufl.runtime.checks import MAX_CROP_SIDE, counts_within

FreezeBN = Literal["none", "backbone", "all"]
MiTVariant = Literal["mit_b0", "mit_b1", "mit_b2", "mit_b3", "mit_b4", "mit_b5"]


@dataclass(frozen=True)
class ModelConfig:
    """The ``model`` section of a config."""

    # The network (the network registry, tufl.models.registry): deeplabv2 (ResNet-101),
    # bisenet (ResNet-18) or daformer (a SegFormer MiT encoder, see model.backbone, with
    # DAFormer's context-aware fusion decoder; Hoyer et al., CVPR 2022).
    arch: str = field(default="deeplabv2", metadata={"choices": NETWORKS})
    # daformer only: the MiT encoder, mit_b0 ... mit_b5 (SegFormer, Xie et al., NeurIPS 2021), of
    # 3.3M, 13.2M, 24.2M, 44.1M, 60.8M, 81.4M parameters; initialise it from the ImageNet
    # checkpoint of the same name (model.pretrained). DAFormer uses mit_b5.
    backbone: MiTVariant = "mit_b5"
    # daformer only: stochastic depth of the MiT blocks, rising linearly from 0 to this rate
    # over the blocks (SegFormer and DAFormer: 0.1).
    drop_path_rate: float = 0.1
    # 19 (GTA5), 16 (SYNTHIA; evaluation adds the 13-class mIoU*), 13 (Cross-City), or the
    # class count of your class definition file (2..255; docs/own-data.md): derived from the
    # file when a data section names one (a different value written here is an error).
    num_classes: int = 19
    # DeepLabV2 only: dilations (1..16384) of the summed-ASPP classifier. (6, 12, 18, 24) is the
    # published head; (6, 12) is what AdaptSegNet/DACS-derived code computes.
    aspp_dilations: tuple[int, ...] = (6, 12, 18, 24)
    # DeepLabV2 only: auxiliary classifier on layer3 (ADVENT multi-level).
    multi_level: bool = False
    # BatchNorm layers that normalise with their running statistics during training
    # instead of batch statistics: none, backbone (DeepLabV2 convention) or all (the
    # authors' BiSeNet adaptation, `--freeze_bn` = `net.eval()`). Frozen statistics never
    # change. true/false (older configs) mean backbone/none.
    freeze_bn: FreezeBN | bool = "backbone"
    # Whether the affine weight and bias of the frozen BatchNorm layers still train
    # (authors' BiSeNet adaptation: yes; DeepLabV2 convention: no).
    frozen_bn_affine_trainable: bool = False
    # Initial weights: local path or URL; null = random initialisation.
    pretrained: str | None = None
    # Layout of the weight file; auto detects torchvision, deeplab_init, mit_nvidia (the SegFormer
    # release's ImageNet mit_b*.pth, used by DAFormer), mit_hf (Hugging Face nvidia/mit-b*:
    # pytorch_model.bin, or model.safetensors with the safetensors package) or tufl.
    pretrained_format: Literal["auto", "torchvision", "deeplab_init", "mit_nvidia", "mit_hf", "tufl"] = "auto"
    # Input normalisation; "auto" follows the weights (imagenet_rgb without weights).
    input_convention: Literal["auto", "imagenet_rgb", "caffe_bgr"] = "auto"
    # Accept weight files that do not cover the whole network.
    allow_partial_load: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.freeze_bn, bool):  # the boolean form of older configs
            object.__setattr__(self, "freeze_bn", "backbone" if self.freeze_bn else "none")

    def problems(self) -> list[str]:
        if self.arch not in NETWORKS:
            return [f"arch: {NETWORKS.unknown(self.arch)}"]
        out = NETWORKS.get(self.arch).config_problems(self)
        if not MIN_CLASSES <= self.num_classes <= MAX_CLASSES:
            out.append(f"num_classes: must be {MIN_CLASSES}..{MAX_CLASSES} (19/16/13 for the Cityscapes class sets, "
                       f"or the count of your class definition file), got {self.num_classes}")
        out += counts_within("aspp_dilations", self.aspp_dilations, 1, MAX_CROP_SIDE)
        if not 0.0 <= self.drop_path_rate < 1.0:
            out.append(f"drop_path_rate: must be in [0, 1), got {self.drop_path_rate}")
        return out
