"""Run folders as report inputs: checked and named, with their metric records, classes,
stored config and final scores.

A run folder (``experiment.output_dir`` of ``tufl train``) holds ``metrics.jsonl`` and
the checkpoint the report predicts with (``checkpoint_last.pt`` or
``checkpoint_best.pt``); its scores are its last ``val`` record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tufl.data.class_set import ModelClasses, checkpoint_classes
from tufl.data.labels import class_names, generic_palette, is_cityscapes_set, palette
from tufl.evaluation.seed_runs import run_labels
from tufl.report.inputs import ModelReport
from tufl.runtime.checkpoint_files import BEST_NAME, LAST_NAME
from tufl.runtime.errors import BadFileError, DataError
from tufl.runtime.run_log import read_metrics

METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.yaml"
CHECKPOINTS = {"last": LAST_NAME, "best": BEST_NAME}


class NotARunError(DataError):
    """A folder given as a run is not a tufl run folder (or lacks what the report needs)."""


@dataclass(frozen=True)
class RunFolder:
    """A checked run folder: its label on the page, its checkpoint and its metric records."""

    path: Path
    label: str
    checkpoint: Path
    metrics: list[dict[str, Any]]

    @property
    def val_records(self) -> list[dict[str, Any]]:
        return [r for r in self.metrics if r.get("kind") == "val"]


def open_runs(paths: Sequence[str | Path], labels: Sequence[str] | None = None,
              checkpoint: str = "last") -> list[RunFolder]:
    """Check every folder (all problems of one folder in one message) and name the runs:
    ``labels``, else the folder names (their paths below the common parent when those repeat)."""
    if not paths:
        raise ValueError("no run folders given")
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"--checkpoint: {checkpoint!r} is not one of {', '.join(CHECKPOINTS)}")
    if labels:
        if len(labels) != len(paths):
            raise ValueError(f"--labels: {len(labels)} labels for {len(paths)} run folders")
        if len(set(labels)) != len(labels):
            raise ValueError(f"--labels: labels must be distinct, got {list(labels)}")
        names = list(labels)
    else:
        names = [Path(p).resolve().name for p in paths]
        if len(set(names)) != len(names):
            names = run_labels(paths)  # paths below the common parent (a ValueError for a folder given twice)
    return [_open_run(Path(p), name, CHECKPOINTS[checkpoint]) for p, name in zip(paths, names)]


def _open_run(path: Path, label: str, checkpoint_name: str) -> RunFolder:
    if not path.exists():
        raise NotARunError(f"{path}: no such run folder")
    if not path.is_dir():
        raise NotARunError(f"{path}: not a folder (give the run folder, e.g. runs/<name>)")
    missing = [name for name in (METRICS_NAME, checkpoint_name) if not (path / name).is_file()]
    if missing == [BEST_NAME] and (path / LAST_NAME).is_file():
        raise NotARunError(f"{path}: no {BEST_NAME} (a run writes it only when it validates); "
                           "use --checkpoint last")
    if missing:
        raise NotARunError(f"{path}: not a tufl run folder: no {' and no '.join(missing)}")
    return RunFolder(path, label, path / checkpoint_name, read_metrics(path))


def model_classes(state: Any, num_classes: int, source: str) -> ModelClasses:
    """The classes the checkpoint ``state`` says its model predicts; for one that does not say,
    the Cityscapes set of a 19/16/13-class model, else generic names ("class 0", ...)."""
    classes = checkpoint_classes(state, source)
    if classes is not None:
        if classes.num_classes != num_classes:
            raise BadFileError(source, f"names {classes.num_classes} classes for a {num_classes}-class model")
        return classes
    if is_cityscapes_set(num_classes):
        colours = tuple(tuple(int(c) for c in row) for row in palette(num_classes)[:num_classes])
        return ModelClasses(class_names(num_classes), colours, origin="Cityscapes")  # type: ignore[arg-type]
    return ModelClasses(tuple(f"class {i}" for i in range(num_classes)), generic_palette(num_classes),
                        origin="generic")


def stored_config(run: RunFolder, state: Any) -> Any:
    """The parts of the run's stored config the report reads (its model, ``data.val`` and
    ``data.target``), validated: from ``config.yaml`` in the folder, else the checkpoint's
    ``"config"`` entry."""
    from tufl.config import experiment_from_dict

    tree, origin = None, str(run.path / CONFIG_NAME)
    if (run.path / CONFIG_NAME).is_file():
        try:
            tree = yaml.safe_load((run.path / CONFIG_NAME).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise BadFileError(origin, f"cannot read it ({error})") from None
    elif isinstance(state, dict) and isinstance(state.get("config"), dict):
        tree, origin = state["config"], f"{run.checkpoint} (stored config)"
    if not isinstance(tree, dict):
        raise NotARunError(f"{run.path}: no {CONFIG_NAME} and {run.checkpoint.name} stores no config")
    part: dict[str, Any] = {key: tree[key] for key in ("experiment", "model") if key in tree}
    data = tree.get("data") or {}
    part["data"] = {key: data[key] for key in ("val", "target") if key in data}
    loss = tree.get("loss") or {}
    part["loss"] = {key: loss[key] for key in ("unsupervised",) if key in loss}
    return experiment_from_dict(part, default_origin=origin)


def model_report(run: RunFolder, names: Sequence[str], train_seconds: float | None = None) -> ModelReport:
    """The run's row of the report: the scores of its last ``val`` record (none without one),
    its records and training time (``train_seconds``, else from the records)."""
    seconds = train_seconds if train_seconds is not None else logged_seconds(run.metrics)
    vals = run.val_records
    if not vals:
        return ModelReport(run.label, None, None, run.metrics, seconds)
    last = vals[-1]
    where = run.path / METRICS_NAME
    iou, miou = last.get("iou"), last.get("miou")
    if not isinstance(iou, dict) or not _is_number(miou):
        raise BadFileError(where, f"the last val record (iteration {last.get('iter')}) has no miou and per-class iou")
    if list(iou) != list(names):
        raise BadFileError(where, f"the last val record (iteration {last.get('iter')}) scores other classes than "
                                  f"{run.checkpoint.name} predicts ({_name_differences(list(iou), list(names))})")
    values = [float(v) if _is_number(v) else math.nan for v in iou.values()]
    best = last.get("best_miou")
    return ModelReport(run.label, float(miou), values, run.metrics, seconds, scored_at=last.get("iter"),
                       best_miou=float(best) if _is_number(best) else None)


def _name_differences(scored: list[str], predicted: list[str]) -> str:
    if len(scored) != len(predicted):
        return f"{len(scored)} classes scored, {len(predicted)} predicted"
    pairs = [f"train id {i}: {a!r} scored, {b!r} predicted" for i, (a, b) in enumerate(zip(scored, predicted)) if a != b]
    return "; ".join(pairs[:3]) + ("; ..." if len(pairs) > 3 else "")


def logged_seconds(records: Sequence[dict[str, Any]]) -> float | None:
    """Training time from the train records' ``elapsed_s`` (seconds since the process
    started): summed over the processes of a resumed run, whose count starts again."""
    total, last = 0.0, None
    for record in records:
        value = record.get("elapsed_s") if record.get("kind") == "train" else None
        if not _is_number(value):
            continue
        if last is not None and value < last:
            total += last
        last = float(value)
    return None if last is None else total + last


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
