"""Checks of the losses' tensor arguments, and config sections turned into constructor arguments.

The checks of configuration values (``*_problems``) are in :mod:`tufl.runtime.checks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from tufl.runtime.checks import class_weight_problems


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


def config_arguments(cfg: object, num_classes: int, exclude: Sequence[str] = ()) -> dict[str, object]:
    """Keyword arguments ``field=value`` of a loss config dataclass, checked first.

    Raises ``ValueError`` with every problem of ``cfg`` (its ``problems()``) and a class
    weight list whose length is not ``num_classes``.
    """
    found = list(cfg.problems()) if hasattr(cfg, "problems") else []  # type: ignore[attr-defined]
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in exclude}  # type: ignore[arg-type]
    weights = values.get("class_weights")
    if weights is not None and len(weights) != num_classes:
        found.append(f"class_weights: expected {num_classes} weights (one per class), got {len(weights)}")
    if found:
        raise ValueError(f"{type(cfg).__name__}: " + "; ".join(found))
    return values
