"""Argument checks shared by the losses and their configuration dataclasses.

The ``*_problems`` functions return messages ``"field: what is wrong"`` named after
the configuration fields, so the same text serves a config file and a constructor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def focal_problems(gamma: float, focal_type: int) -> list[str]:
    """Impossible values of the focal factor options."""
    found: list[str] = []
    if not gamma >= 0 or math.isinf(gamma):
        found.append(f"gamma: must be a finite number >= 0, got {gamma}")
    if focal_type not in (1, 2):
        found.append(f"focal_type: must be 1 (|1 - Q|^gamma) or 2 (|P - Q|^gamma), got {focal_type!r}")
    return found


def threshold_problems(theta0: float, a: float, b: float, d: float, a_decay: float) -> list[str]:
    """Impossible values of the adaptive threshold options."""
    found: list[str] = []
    if not 0.0 <= theta0 <= 0.999:
        found.append(f"theta0: must be in [0, 0.999] (thresholds are capped at 0.999), got {theta0}")
    if not 0.0 <= a <= 1.0:
        found.append(f"a: must be in [0, 1], got {a}")
    if not 0.0 <= b <= 1.0:
        found.append(f"b: must be in [0, 1], got {b}")
    elif d == 0 and b == 1.0:
        found.append("b: must be < 1 when d = 0 (floor((N_c + 1) * b) would index past the sorted list)")
    if not 0.0 <= d < math.inf:
        found.append(f"d: must be a finite number >= 0, got {d}")
    if not 0.0 <= a_decay < math.inf:
        found.append(f"a_decay: must be a finite number >= 0 (0 = off), got {a_decay}")
    return found


def ratio_problems(name: str, ratio: float) -> list[str]:
    """``ratio`` must be a fraction in ``(0, 1]``."""
    if not 0.0 < ratio <= 1.0:
        return [f"{name}: must be in (0, 1] (1 = off), got {ratio}"]
    return []


def floor_problems(loss_floor: float) -> list[str]:
    """``loss_floor`` must be a finite number ``>= 0`` (0 = off)."""
    if not 0.0 <= loss_floor < math.inf:
        return [f"loss_floor: must be a finite number >= 0 (0 = off), got {loss_floor}"]
    return []


def probability_problems(name: str, value: float) -> list[str]:
    """``value`` must lie in ``[0, 1]``."""
    if not 0.0 <= value <= 1.0:
        return [f"{name}: must be in [0, 1], got {value}"]
    return []


def class_weight_problems(class_weights: Sequence[float] | None) -> list[str]:
    """Class weights must be finite and non-negative (their count is checked later)."""
    if class_weights is None:
        return []
    if len(class_weights) == 0:
        return ["class_weights: must list one weight per class, or be null for all ones"]
    bad = [w for w in class_weights if not 0.0 <= w < math.inf]
    if bad:
        return [f"class_weights: weights must be finite and >= 0, got {bad}"]
    return []


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
