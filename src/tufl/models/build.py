"""Model configuration and construction: network, weights, input convention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from tufl.data.labels import MAX_CLASSES, MIN_CLASSES
from tufl.models.bisenet import BiSeNet
from tufl.models.daformer import DAFormer
from tufl.models.deeplabv2 import DeepLabV2
from tufl.models.mit import MIT_VARIANTS
from tufl.models.resnet import freeze_batchnorm
from tufl.models.segmentor import INPUT_CONVENTIONS, Segmentor
from tufl.models.weights import (
    CONVENTION_OF_FORMAT,
    MIT_FORMATS,
    LoadReport,
    WeightsError,
    backbone_state,
    detect_format,
    load_state,
    read_weights,
)

# Checkpoint keys of heads that exist only in training networks.
AUX_PREFIX = "net.aux_"

FreezeBN = Literal["none", "backbone", "all"]
MiTVariant = Literal["mit_b0", "mit_b1", "mit_b2", "mit_b3", "mit_b4", "mit_b5"]


@dataclass
class ModelConfig:
    """The ``model`` section of a config."""

    # deeplabv2 (ResNet-101), bisenet (ResNet-18) or daformer (a SegFormer MiT encoder, see
    # model.backbone, with DAFormer's context-aware fusion decoder; Hoyer et al., CVPR 2022).
    arch: Literal["deeplabv2", "bisenet", "daformer"] = "deeplabv2"
    # daformer only: the MiT encoder, mit_b0 ... mit_b5 (SegFormer, Xie et al., NeurIPS 2021), of
    # 3.3M, 13.2M, 24.2M, 44.1M, 60.8M, 81.4M parameters; initialise it from the ImageNet
    # checkpoint of the same name (model.pretrained). DAFormer uses mit_b5.
    backbone: MiTVariant = "mit_b5"
    # daformer only: stochastic depth of the MiT blocks, rising linearly from 0 to this rate
    # over the blocks (SegFormer and DAFormer: 0.1).
    drop_path_rate: float = 0.1
    # 19 (GTA5), 16 (SYNTHIA; evaluation adds the 13-class mIoU*), 13 (Cross-City), or the
    # class count of your class definition file (2..255; docs/own-data.md).
    num_classes: int = 19
    # DeepLabV2 only: dilations of the summed-ASPP classifier. (6, 12, 18, 24) is the
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
            self.freeze_bn = "backbone" if self.freeze_bn else "none"

    def problems(self) -> list[str]:
        out = []
        if not MIN_CLASSES <= self.num_classes <= MAX_CLASSES:
            out.append(f"num_classes: must be {MIN_CLASSES}..{MAX_CLASSES} (19/16/13 for the Cityscapes class sets, "
                       f"or the count of your class definition file), got {self.num_classes}")
        if not self.aspp_dilations or any(d < 1 for d in self.aspp_dilations):
            out.append("aspp_dilations: needs at least one dilation, all >= 1")
        if self.multi_level and self.arch != "deeplabv2":
            out.append("multi_level: only DeepLabV2 has a multi-level head")
        if not 0.0 <= self.drop_path_rate < 1.0:
            out.append(f"drop_path_rate: must be in [0, 1), got {self.drop_path_rate}")
        return out


@dataclass
class BuiltModel:
    model: Segmentor
    weights_format: str | None
    load_report: LoadReport | None


def _network(cfg: ModelConfig, training: bool) -> nn.Module:
    if cfg.arch == "deeplabv2":
        return DeepLabV2(cfg.num_classes, cfg.aspp_dilations, multi_level=cfg.multi_level and training)
    if cfg.arch == "daformer":
        return DAFormer(cfg.num_classes, cfg.backbone, cfg.drop_path_rate)
    return BiSeNet(cfg.num_classes, aux_heads=training)


def _backbone(net: nn.Module) -> nn.Module:
    return net.context_path.backbone if isinstance(net, BiSeNet) else net.backbone


def _check_weights_fit_arch(fmt: str, cfg: ModelConfig, source: str) -> None:
    """ImageNet weights of one backbone family cannot initialise another."""
    is_mit = fmt in MIT_FORMATS
    if is_mit != (cfg.arch == "daformer"):
        kind = "a MiT (SegFormer) encoder" if is_mit else "a ResNet"
        wanted = "model.arch: daformer" if is_mit else "a MiT encoder file (mit_b*.pth or nvidia/mit-b*)"
        raise WeightsError(f"weights {source} hold {kind}, which does not fit model.arch={cfg.arch}; "
                           f"use {wanted}")


def _check_checkpoint_fits(obj: dict[str, Any], cfg: ModelConfig, source: str) -> None:
    stored = obj.get("model_config", {})
    keys = ("arch", "num_classes", "backbone") if cfg.arch == "daformer" else ("arch", "num_classes")
    for key in keys:
        if key in stored and stored[key] != getattr(cfg, key):
            raise WeightsError(
                f"checkpoint {source} was trained with model.{key}={stored[key]!r}, "
                f"but the config asks for {getattr(cfg, key)!r}"
            )


def build_model(cfg: ModelConfig, training: bool = True, weights: dict[str, Any] | None = None) -> BuiltModel:
    """Build the configured network wrapped in a :class:`Segmentor`.

    ``training=False`` builds an inference network: no auxiliary heads. ``weights``
    may pass an already-read weight file instead of ``cfg.pretrained``.
    The input convention is taken from the weights; an explicit
    ``cfg.input_convention`` that contradicts them is an error.
    """
    source = cfg.pretrained or "<given weights>"
    fmt = None
    if weights is None and cfg.pretrained:
        weights = read_weights(cfg.pretrained)
    if weights is not None:
        fmt = detect_format(weights, source) if cfg.pretrained_format == "auto" else cfg.pretrained_format
        if fmt == "tufl":
            _check_checkpoint_fits(weights, cfg, source)
            weights_convention = weights.get("input_convention", "imagenet_rgb")
        else:
            _check_weights_fit_arch(fmt, cfg, source)
            weights_convention = CONVENTION_OF_FORMAT[fmt]
        if cfg.input_convention not in ("auto", weights_convention):
            raise WeightsError(
                f"model.input_convention={cfg.input_convention} contradicts the weights {source}, "
                f"which expect {weights_convention} input"
            )
        convention = weights_convention
    else:
        convention = "imagenet_rgb" if cfg.input_convention == "auto" else cfg.input_convention

    net = _network(cfg, training)
    if cfg.freeze_bn != "none":
        frozen = net if cfg.freeze_bn == "all" else _backbone(net)
        freeze_batchnorm(frozen, trainable_affine=cfg.frozen_bn_affine_trainable)
    model = Segmentor(net, cfg.num_classes, INPUT_CONVENTIONS[convention])

    report = None
    if weights is not None and fmt == "tufl":
        if "model" not in weights:
            raise WeightsError(f"checkpoint {source} has no 'model' entry")
        report = load_state(model, weights["model"], source, allow_partial=cfg.allow_partial_load,
                            optional_prefixes=(AUX_PREFIX,))
    elif weights is not None:
        state, skipped = backbone_state(weights, fmt)  # type: ignore[arg-type]
        report = load_state(_backbone(net), state, source, allow_partial=cfg.allow_partial_load,
                            skipped=skipped, hint=_variant_hint(cfg, fmt))
    return BuiltModel(model, fmt, report)


def _variant_hint(cfg: ModelConfig, fmt: str) -> str:
    if fmt not in MIT_FORMATS:
        return ""
    spec = MIT_VARIANTS[cfg.backbone]
    return (f"the network is model.backbone={cfg.backbone} (stage widths {list(spec.embed_dims)}, "
            f"depths {list(spec.depths)}); is the file another MiT variant?")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_from_checkpoint(path: str, training: bool = False) -> tuple[Segmentor, dict[str, Any]]:
    """Rebuild the network of a tufl checkpoint from the model config stored in it.

    Returns the network (an inference network unless ``training``) and the
    checkpoint's contents.
    """
    from tufl.config.loader import ConfigError, from_dict

    state = read_weights(path)
    if detect_format(state, path) != "tufl":
        raise WeightsError(f"{path} is not a tufl checkpoint (train one with `tufl train`)")
    try:
        cfg = from_dict(ModelConfig, dict(state.get("model_config", {})), default_origin=path)
    except ConfigError as exc:
        raise WeightsError(f"{path}: stored model config is invalid: {exc}") from exc
    cfg.pretrained = path
    cfg.pretrained_format = "tufl"
    cfg.input_convention = "auto"
    return build_model(cfg, training=training, weights=state).model, state
