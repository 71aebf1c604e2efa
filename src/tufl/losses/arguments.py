"""Checks of the losses' tensor arguments, and the one way a loss is built from its config dataclass.

The checks of configuration values (``*_problems``) are in :mod:`tufl.runtime.checks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from tufl.runtime.checks import class_weight_problems

ConfigT = TypeVar("ConfigT")
LossT = TypeVar("LossT", bound="ConfiguredLoss")


def class_weight_tensor(class_weights: Sequence[float] | Tensor | None, num_classes: int) -> Tensor | None:
    """Validate optional per-class weights and return them as a float32 ``[C]`` tensor."""
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32).detach().clone()
    if weights.shape != (num_classes,):
        raise ValueError(f"class_weights: expected {num_classes} weights, got shape {tuple(weights.shape)}")
    problems = class_weight_problems(weights.tolist())
    if problems:
        raise ValueError("; ".join(problems))
    return weights


def check_logits(logits: Tensor, num_classes: int, name: str = "logits") -> None:
    """``logits`` must be a floating ``[B, C, H, W]`` tensor with ``C == num_classes``."""
    if not isinstance(logits, Tensor) or logits.dim() != 4:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"{name}: expected a [B, C, H, W] tensor, got {shape}")
    if logits.shape[1] != num_classes:
        raise ValueError(f"{name}: expected {num_classes} classes in dim 1, got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"{name}: expected floating-point logits, got {logits.dtype}")


def check_logit_pair(weak: Tensor, strong: Tensor, valid: Tensor | None, num_classes: int) -> None:
    """Check the ``(weak_logits, strong_logits, valid)`` arguments of an unsupervised loss."""
    check_logits(weak, num_classes, "weak_logits")
    check_logits(strong, num_classes, "strong_logits")
    if weak.shape != strong.shape:
        raise ValueError(
            f"weak_logits and strong_logits must have the same shape, got {tuple(weak.shape)} and {tuple(strong.shape)}"
        )
    if weak.device != strong.device:
        raise ValueError(f"weak_logits is on {weak.device} but strong_logits is on {strong.device}")
    if valid is not None:
        check_pixel_mask(valid, weak)


def check_pixel_mask(valid: Tensor, logits: Tensor) -> None:
    """``valid`` must be a bool ``[B, H, W]`` mask matching ``logits`` ``[B, C, H, W]``."""
    expected = (logits.shape[0], *logits.shape[2:])
    if not isinstance(valid, Tensor) or valid.dtype != torch.bool or tuple(valid.shape) != expected:
        got = f"{valid.dtype} {tuple(valid.shape)}" if isinstance(valid, Tensor) else type(valid).__name__
        raise ValueError(f"valid: expected a bool mask of shape {expected}, got {got}")
    if valid.device != logits.device:
        raise ValueError(f"valid is on {valid.device} but the logits are on {logits.device}")


def resolve_config(
    owner: str, config_cls: type[ConfigT], num_classes: int, cfg: ConfigT | None, overrides: Mapping[str, Any]
) -> ConfigT:
    """``cfg`` (``None``: the defaults of ``config_cls``) with ``overrides`` (field names) applied, checked.

    Raises ``TypeError`` for a ``cfg`` of another type or an override that is no field of it
    (``dataclasses.replace`` names it), and ``ValueError`` ``"<owner>: ..."`` listing every
    problem: the config's ``problems()``, ``num_classes < 1`` and a class weight count
    that is not ``num_classes``.
    """
    if cfg is None:
        cfg = config_cls()
    elif not isinstance(cfg, config_cls):
        raise TypeError(f"{owner}: needs a {config_cls.__name__}, got {type(cfg).__name__}")
    if overrides:
        weights = overrides.get("class_weights")
        if weights is not None:  # a list or tensor given in code: the config's tuple of floats
            overrides = {**overrides, "class_weights": tuple(float(w) for w in weights)}
        cfg = dataclasses.replace(cfg, **overrides)  # type: ignore[type-var]
    found = [f"num_classes: must be >= 1, got {num_classes}"] if num_classes < 1 else []
    found += cfg.problems()  # type: ignore[attr-defined]
    weights = getattr(cfg, "class_weights", None)
    if weights is not None and len(weights) != num_classes:
        found.append(f"class_weights: expected {num_classes} weights (one per class), got {len(weights)}")
    if found:
        raise ValueError(f"{owner}: " + "; ".join(found))
    return cfg


class ConfiguredLoss(nn.Module):
    """A loss built from its config dataclass ``Config``, the one place of its options and defaults.

    ``Loss(num_classes, cfg=None, **overrides)``: ``cfg`` (``None``: the defaults) with
    ``overrides`` (field names of ``Config``) applied and checked by :func:`resolve_config`;
    ``Loss.from_config(num_classes, cfg)`` is the same. The result is kept as ``config``;
    a config with ``class_weights`` gives the float32 ``[C]`` buffer ``class_weights``
    (``None`` for all ones; not state).
    """

    Config: ClassVar[type]
    class_weights: Tensor | None

    @classmethod
    def from_config(cls: type[LossT], num_classes: int, cfg: Any) -> LossT:
        """The loss of its config section."""
        return cls(num_classes, cfg)

    def __init__(self, num_classes: int, cfg: Any | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = resolve_config(type(self).__name__, self.Config, num_classes, cfg, overrides)
        self.num_classes = num_classes
        if hasattr(self.config, "class_weights"):
            weights = class_weight_tensor(self.config.class_weights, num_classes)
            self.register_buffer("class_weights", weights, persistent=False)
