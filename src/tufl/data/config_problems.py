"""Helpers that list problems of configuration values as ``"field: what is wrong"``."""

from __future__ import annotations


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


def probability_problems(owner: object, names: tuple[str, ...]) -> list[str]:
    """Problems of attributes of ``owner`` that must be probabilities."""
    return [
        f"{n}: must be a probability in [0, 1], got {getattr(owner, n)}"
        for n in names
        if not 0.0 <= getattr(owner, n) <= 1.0
    ]
