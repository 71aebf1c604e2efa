"""What a run shows of itself while it trains: the values of a ``metrics.jsonl`` line, the
progress bar's postfix, and the inspection grids of mixed images (``train.inspect_every``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from torch import nn

from tufl.train.step import LogWindow

# The values the progress bar shows, when the run logs them.
BAR_KEYS = ("loss", "loss_sup", "loss_unsup", "loss_mix", "loss_mic", "pass_fraction", "lr")


def train_values(window: LogWindow, timing: dict[str, float], skipped: int, objective: nn.Module,
                 bad_samples: dict[str, int], started: float) -> dict[str, Any]:
    """One ``train`` record: the window's averages (a host read), skipped steps, elapsed time,
    timing, TUFL thresholds and bad-sample counts (when any)."""
    values: dict[str, Any] = window.averages()
    values["skipped_nonfinite"] = skipped
    values["elapsed_s"] = round(time.time() - started, 2)
    values.update(timing)
    thresholds = getattr(objective, "thresholds", None)
    if thresholds is not None:
        values["thresholds"] = {str(i): round(float(t), 5) for i, t in enumerate(thresholds.tolist())}
    if any(bad_samples.values()):
        values["bad_samples"] = dict(bad_samples)
    return values


def bar_postfix(values: dict[str, Any]) -> dict[str, str]:
    """The progress bar's short view of a record."""
    return {k: f"{values[k]:.4g}" for k in BAR_KEYS if k in values}


def save_inspection(run_dir: Path, iteration: int, last_inputs: tuple[Any, Any, Any], num_classes: int) -> None:
    """The grid of the last mixed batch (source, target, mixed images and labels, weights)."""
    from tufl.data.labels import palette
    from tufl.mixing.grid import save_mix_grid

    sources, targets, mix = last_inputs
    view = mix.target
    save_mix_grid(run_dir / "inspect" / f"mix_{iteration:07d}.png", sources, targets, view.images, view.labels,
                  view.weights, palette(num_classes))
