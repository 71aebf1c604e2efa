"""Model construction: the registered network of a ``model`` section, its weights and
input convention, wrapped in a :class:`~tufl.models.segmentor.Segmentor`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from tufl.models.config import ModelConfig
from tufl.models.network import SegNetwork
from tufl.models.registry import NETWORKS
from tufl.models.resnet import freeze_batchnorm
from tufl.models.segmentor import INPUT_CONVENTIONS, Segmentor
from tufl.models.weights import (
    CONVENTION_OF_FORMAT,
    WEIGHT_FAMILY_OF_FORMAT,
    LoadReport,
    WeightsError,
    backbone_state,
    detect_format,
    load_state,
    read_weights,
)

__all__ = ["BuiltModel", "ModelConfig", "build_model", "count_parameters", "model_from_checkpoint"]

# Checkpoint keys of heads that exist only in training networks.
AUX_PREFIX = "net.aux_"


@dataclass
class BuiltModel:
    model: Segmentor
    weights_format: str | None
    load_report: LoadReport | None


def _check_weights_fit_arch(fmt: str, network: type[SegNetwork], cfg: ModelConfig, source: str) -> None:
    """ImageNet weights of one encoder family cannot initialise another."""
    family = WEIGHT_FAMILY_OF_FORMAT[fmt]
    if family != network.weight_family:
        fitting = [name for name, net in NETWORKS.items() if net.weight_family == family]
        kind = "a MiT (SegFormer) encoder" if family == "mit" else "a ResNet"
        wanted = (f"model.arch: {' or '.join(fitting)}" if fitting else "another network") if family == "mit" \
            else "a MiT encoder file (mit_b*.pth or nvidia/mit-b*)"
        raise WeightsError(f"weights {source} hold {kind}, which does not fit model.arch={cfg.arch}; "
                           f"use {wanted}")


def _check_checkpoint_fits(obj: dict[str, Any], network: type[SegNetwork], cfg: ModelConfig, source: str) -> None:
    stored = obj.get("model_config", {})
    for key in network.checkpoint_keys:
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
    network = NETWORKS.get(cfg.arch)
    source = cfg.pretrained or "<given weights>"
    if weights is None and cfg.pretrained:
        weights = read_weights(cfg.pretrained)
    fmt, convention = _weights_format(cfg, network, weights, source)
    net = network.from_config(cfg, training)
    if cfg.freeze_bn != "none":
        frozen = net if cfg.freeze_bn == "all" else net.backbone_module()
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
        hint = network.weights_hint(cfg) if network.weight_family == WEIGHT_FAMILY_OF_FORMAT[fmt] else ""
        report = load_state(net.backbone_module(), state, source, allow_partial=cfg.allow_partial_load,
                            skipped=skipped, hint=hint)
    return BuiltModel(model, fmt, report)


def _weights_format(cfg: ModelConfig, network: type[SegNetwork], weights: dict[str, Any] | None,
                    source: str) -> tuple[str | None, str]:
    """The layout of the weights (None without) and the input convention they expect,
    checked against the network and ``model.input_convention``."""
    if weights is None:
        return None, "imagenet_rgb" if cfg.input_convention == "auto" else cfg.input_convention
    fmt = detect_format(weights, source) if cfg.pretrained_format == "auto" else cfg.pretrained_format
    if fmt == "tufl":
        _check_checkpoint_fits(weights, network, cfg, source)
        convention = weights.get("input_convention", "imagenet_rgb")
    else:
        _check_weights_fit_arch(fmt, network, cfg, source)
        convention = CONVENTION_OF_FORMAT[fmt]
    if cfg.input_convention not in ("auto", convention):
        raise WeightsError(f"model.input_convention={cfg.input_convention} contradicts the weights {source}, "
                           f"which expect {convention} input")
    return fmt, convention


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_from_checkpoint(path: str, training: bool = False) -> tuple[Segmentor, dict[str, Any]]:
    """Rebuild the network of a tufl checkpoint from the model config stored in it.

    Returns the network (an inference network unless ``training``) and the
    checkpoint's contents.
    """
    from tufl.runtime.errors import ConfigError
    from tufl.runtime.typed_config import from_dict

    state = read_weights(path)
    if detect_format(state, path) != "tufl":
        raise WeightsError(f"{path} is not a tufl checkpoint (train one with `tufl train`)")
    try:
        cfg = from_dict(ModelConfig, dict(state.get("model_config", {})), default_origin=path)
    except ConfigError as exc:
        raise WeightsError(f"{path}: stored model config is invalid: {exc}") from exc
    cfg = replace(cfg, pretrained=path, pretrained_format="tufl", input_convention="auto")
    return build_model(cfg, training=training, weights=state).model, state
