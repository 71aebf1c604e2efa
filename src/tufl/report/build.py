"""The report of run folders (``tufl report``, and the demo's report): read every run, predict
the sample images with each run's checkpoint, then write the page (:mod:`tufl.report.writer`).

Everything is read and computed before the first file is written, so bad input leaves
the output folder as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tufl.data.class_set import ModelClasses
from tufl.report.inputs import ModelReport, QualitativeRow
from tufl.report.page import PageText
from tufl.report.runs import RunFolder, model_classes, model_report, open_runs, stored_config
from tufl.report.samples import SampleSource, predict_samples, read_samples, sample_source
from tufl.report.writer import write_report
from tufl.runtime.errors import DataError


@dataclass(frozen=True)
class ReportOptions:
    """The choices of ``tufl report``."""

    # Run names on the page; empty: the folder names.
    labels: tuple[str, ...] = ()
    # Sample images predicted by every run (0: none).
    samples: int = 6
    # The checkpoint each run predicts with: "last" or "best".
    checkpoint: str = "last"
    # Device of the predictions ("auto": CUDA when available).
    device: str = "auto"
    # Page title; None: "tufl report: <run names>".
    title: str | None = None


@dataclass(frozen=True)
class ReportExtras:
    """What a caller knows beyond the run folders (the demo passes its own)."""

    # Shown in a settings block; empty: the runs' folders, checkpoint, classes and samples.
    settings: Mapping[str, Any] = field(default_factory=dict)
    # Training time per run label (default: from the runs' train records).
    train_seconds: Mapping[str, float] = field(default_factory=dict)
    # Scores per run label measured elsewhere on the reported checkpoint: (mIoU, IoU per
    # class, NaN for a class absent from the split); they replace the last val record.
    scores: Mapping[str, tuple[float, Sequence[float]]] = field(default_factory=dict)
    # What the scores were measured on (default: "the validation split").
    scores_on: str | None = None
    # The images of the sample predictions (default: the runs' data.val, else data.target).
    samples_from: SampleSource | None = None


@dataclass
class _Run:
    folder: RunFolder
    model: torch.nn.Module
    classes: ModelClasses
    config: Any
    iteration: Any


def report_runs(run_dirs: Sequence[str | Path], out: str | Path, options: ReportOptions = ReportOptions(),
                extras: ReportExtras = ReportExtras()) -> Path:
    """Write the report of the runs in ``run_dirs`` into ``out``; returns its ``index.html``."""
    from tufl.runtime.distributed import pick_device

    if options.samples < 0:
        raise ValueError(f"--samples must be >= 0, got {options.samples}")
    try:
        device = pick_device(options.device)
    except RuntimeError as error:
        raise ValueError(f"--device: {error}") from None
    folders = open_runs(run_dirs, options.labels, options.checkpoint)
    unknown = sorted((set(extras.scores) | set(extras.train_seconds)) - {f.label for f in folders})
    if unknown:
        raise ValueError(f"scores or times given for unknown runs {unknown}")
    runs = [_load(folder) for folder in folders]
    classes = _common_classes(runs)
    source = extras.samples_from or sample_source([(r.folder.label, r.config) for r in runs])
    samples = read_samples(source, classes.num_classes, options.samples) if source is not None else []
    predictions = {r.folder.label: predict_samples(r.model, samples, device) for r in runs} if samples else {}
    rows = [QualitativeRow(s.image, s.label, {name: p[i] for name, p in predictions.items()})
            for i, s in enumerate(samples)]
    models = [_model_report(r, classes, extras) for r in runs]
    labels = [r.folder.label for r in runs]
    text = PageText(
        title=options.title or f"tufl report: {', '.join(labels)}",
        settings=dict(extras.settings) or _settings(runs, classes, source, len(samples)),
        scores_on=extras.scores_on or "the validation split",
        samples=_samples_caption(source, len(rows), rows[0].ground_truth is not None if rows else False),
    )
    return write_report(out, models, rows, classes.names, classes.palette(), text=text)


def _load(folder: RunFolder) -> _Run:
    from tufl.models.build import model_from_checkpoint

    model, state = model_from_checkpoint(str(folder.checkpoint))
    classes = model_classes(state, model.num_classes, str(folder.checkpoint))
    return _Run(folder, model, classes, stored_config(folder, state), state.get("iteration"))


def _common_classes(runs: Sequence[_Run]) -> ModelClasses:
    """The runs' class set; an error naming the first run that predicts other classes."""
    first = runs[0]
    for run in runs[1:]:
        differences = first.classes.differences(run.classes)
        if differences:
            raise DataError(f"{run.folder.path} predicts other classes than {first.folder.path} "
                            f"({'; '.join(differences[:3])}): only runs of one class set compare")
    return first.classes


def _model_report(run: _Run, classes: ModelClasses, extras: ReportExtras) -> ModelReport:
    label = run.folder.label
    report = model_report(run.folder, classes.names, extras.train_seconds.get(label))
    if label not in extras.scores:
        return report
    miou, iou = extras.scores[label]
    if len(iou) != classes.num_classes:
        raise ValueError(f"{label}: {len(iou)} IoU values for {classes.num_classes} classes")
    return ModelReport(label, float(miou), [float(v) for v in iou], report.metrics, report.train_seconds,
                       scored_at=run.iteration if isinstance(run.iteration, int) else None)


def _settings(runs: Sequence[_Run], classes: ModelClasses, source: SampleSource | None,
              count: int) -> dict[str, Any]:
    """The settings block of a report of run folders."""
    settings: dict[str, Any] = {
        f"run {r.folder.label}": f"{r.folder.path.resolve()} ({r.folder.checkpoint.name}, iteration {r.iteration})"
        for r in runs
    }
    origin = f", {classes.origin}" if classes.origin else ""
    settings["classes"] = f"{classes.num_classes}{origin}"
    settings["sample images"] = f"{count} of {source.describe()}" if source is not None and count else "none"
    return settings


def _samples_caption(source: SampleSource | None, count: int, labelled: bool) -> str:
    where = source.describe() if source is not None else ""
    if labelled:
        return (f"{count} images of {where}: the image, its ground truth and each run's prediction "
                "(black: ignored pixels).")
    return f"{count} unlabelled images of {where}: the image and each run's prediction."
