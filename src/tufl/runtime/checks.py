"""Checks of configuration values, shared by every config section and the losses' constructors.

Each ``*_problems`` function returns messages ``"field: what is wrong"`` named after
the configuration field, so the same text serves a config file (the loader adds the
key's path and file) and a constructor. An empty list means the value is fine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def range_problems(name: str, value: tuple[float, float], low: float, high: float) -> list[str]:
    """Problems of a ``(min, max)`` pair that must satisfy ``low <= min <= max <= high``."""
    if len(value) != 2 or value[0] > value[1]:
        return [f"{name}: must be (min, max) with min <= max, got {value}"]
    if value[0] < low or value[1] > high:
        return [f"{name}: must lie within [{low}, {high}], got {value}"]
    return []


def size_problems(name: str, value: tuple[int, int]) -> list[str]:
    """Problems of a ``(width, height)`` size."""
    if len(value) != 2 or min(value) <= 0:
        return [f"{name}: must be (width, height) with positive values, got {value}"]
    return []


def at_least(name: str, value: float, low: float, note: str = "") -> list[str]:
    """``value`` must be a number ``>= low`` (``note`` is added to the message, e.g. " (0 = off)")."""
    return [] if value >= low else [f"{name}: must be >= {low}{note}, got {value}"]


def within(name: str, value: float, low: float, high: float) -> list[str]:
    """``value`` must lie in ``[low, high]``."""
    return [] if low <= value <= high else [f"{name}: must be in [{low}, {high}], got {value}"]


def probability_fields_problems(owner: object, names: tuple[str, ...]) -> list[str]:
    """Problems of attributes ``names`` of ``owner`` that must be probabilities."""
    return [problem for name in names for problem in probability_problems(name, getattr(owner, name))]


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
