"""Metrics of a run: a JSONL file always, TensorBoard scalars when installed."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from tufl.runtime.atomic import atomic_write_text, json_safe


class MetricsLog:
    """Appends one JSON object per record to ``metrics.jsonl`` in ``run_dir``.

    On resume, records from iterations after the checkpoint are dropped first (and a
    line cut short by a kill), so the log never holds two histories. ``tensorboard`` mirrors every scalar (and
    any per-class vectors, one scalar per class) under ``run_dir/tb`` when the
    package is installed.
    """

    def __init__(self, run_dir: Path, resume_iteration: int | None = None, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        if resume_iteration is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if (record := _parse(line)) is not None and record.get("iter", 0) <= resume_iteration]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        elif resume_iteration is None and self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception:  # tensorboard not installed: JSONL only
                self._tb = None
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_iteration)

    @property
    def has_tensorboard(self) -> bool:
        return self._tb is not None

    def write(self, iteration: int, kind: str, values: dict[str, Any]) -> None:
        record = json_safe({"iter": iteration, "kind": kind, **values})
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(f"{kind}/{key}", value, iteration)
                elif isinstance(value, dict):
                    for sub, v in value.items():
                        if isinstance(v, (int, float)):
                            self._tb.add_scalar(f"{kind}/{key}/{sub}", v, iteration)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Records of a run's ``metrics.jsonl``, optionally of one kind only."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = [r for r in map(_parse, path.read_text().splitlines()) if r is not None]
    return [r for r in records if kind is None or r.get("kind") == kind]


def _parse(line: str) -> dict[str, Any] | None:
    """One record, or None for an empty line or one cut short by a kill mid-write."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
