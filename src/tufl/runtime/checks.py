"""Checks of configuration values, shared by every config section and the losses' constructors.

Each ``*_problems`` function (and :func:`at_least`, :func:`within`) returns messages
``"field: what is wrong"`` named after the configuration field, so the same text serves a
config file (the loader adds the key's path and file) and a constructor. An empty list
means the value is fine. Every check refuses NaN, and a float bound by a finite limit
refuses infinity too. The ``MAX_*`` bounds keep counts and sizes within what int64 and
memory allow; docs/config.md states them beside each key.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

# Optimiser steps (train.iters) and the other iteration counts: at most 10^9.
MAX_ITERS = 10**9
# Images per optimiser step (data.batch_size) and per evaluation forward pass.
MAX_BATCH_SIZE = 4096
# Side of a training crop in pixels (crops are allocated whole, per sample).
MAX_CROP_SIDE = 16384
# Side of an image after a resize, and of a sliding inference window, in pixels.
MAX_IMAGE_SIDE = 32768
# Pixels of an image file (data.max_image_pixels): 2^34, 16 times the largest resize.
MAX_IMAGE_PIXELS = 2**34
# Seeds: what numpy's legacy seeding and every generator here take, 0..2^32-1.
MAX_SEED = 2**32 - 1
# Data-loading workers: at most this many per CPU of the machine loading the config.
WORKERS_PER_CPU = 4


def worker_limit() -> int:
    """The most data-loading workers a config may ask for here: 4 per CPU (``os.cpu_count()``)."""
    return WORKERS_PER_CPU * (os.cpu_count() or 1)


def _bound(x: float) -> str:
    """A bound as a message shows it: ``100``, ``0.5``, ``1e-06``."""
    return format(x, "g") if isinstance(x, float) else str(x)


def finite_problems(name: str, value: float) -> list[str]:
    """``value`` must be a finite number (not NaN, not infinite)."""
    return [] if math.isfinite(value) else [f"{name}: must be a finite number, got {value}"]


def at_least(name: str, value: float, low: float, note: str = "") -> list[str]:
    """``value`` must be a number ``>= low`` and finite (``note`` is added to the message, e.g.
    " (0 = off)")."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{name}: must be a finite number >= {_bound(low)}{note}, got {value}"]
    return [] if value >= low else [f"{name}: must be >= {_bound(low)}{note}, got {value}"]


def above(name: str, value: float, low: float, high: float = math.inf, note: str = "") -> list[str]:
    """``value`` must lie in ``(low, high]`` and be finite."""
    if math.isfinite(value) and low < value <= high:
        return []
    bound = f"> {_bound(low)}" if high == math.inf else f"in ({_bound(low)}, {_bound(high)}]"
    return [f"{name}: must be a finite number {bound}{note}, got {value}"]


def within(name: str, value: float, low: float, high: float, note: str = "") -> list[str]:
    """``value`` must lie in ``[low, high]`` (NaN never does)."""
    if low <= value <= high:
        return []
    return [f"{name}: must be in [{_bound(low)}, {_bound(high)}]{note}, got {value}"]


def count_within(name: str, value: int, low: int, high: int, note: str = "") -> list[str]:
    """An integer count that must lie in ``low..high``."""
    return [] if low <= value <= high else [f"{name}: must be in {low}..{high}{note}, got {value}"]


def counts_within(name: str, values: Sequence[int], low: int, high: int) -> list[str]:
    """A non-empty list of integers, each in ``low..high``."""
    if not values:
        return [f"{name}: must list at least one value in {low}..{high}"]
    bad = [v for v in values if not low <= v <= high]
    return [f"{name}: values must be in {low}..{high}, got {list(values)}"] if bad else []


def workers_problems(name: str, value: int) -> list[str]:
    """Data-loading worker processes: ``0..4 x the CPU count``."""
    limit = worker_limit()
    return count_within(name, value, 0, limit, f" (4 per CPU, {os.cpu_count() or 1} CPUs here)")


def range_problems(name: str, value: tuple[float, float], low: float, high: float) -> list[str]:
    """Problems of a ``(min, max)`` pair that must satisfy ``low <= min <= max <= high``."""
    if len(value) != 2 or not all(math.isfinite(v) for v in value) or not value[0] <= value[1]:
        return [f"{name}: must be (min, max) of finite numbers with min <= max, got {value}"]
    if value[0] < low or value[1] > high:
        return [f"{name}: must lie within [{low}, {high}], got {value}"]
    return []


def size_problems(name: str, value: tuple[int, int], high: int = MAX_CROP_SIDE) -> list[str]:
    """Problems of a ``(width, height)`` size: each side in ``1..high`` pixels."""
    if len(value) != 2 or not all(1 <= v <= high for v in value):
        return [f"{name}: must be (width, height) with sides in 1..{high} pixels, got {value}"]
    return []


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
