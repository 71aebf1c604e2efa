"""The spread of a config over seeds: final validation records of several runs -> one table.

Each run contributes its final mIoU and per-class IoU (fractions; ``None``/NaN for a
class absent from the validation ground truth). :func:`aggregate` gives the mean and
the *sample* standard deviation (``n - 1`` in the denominator, as reproduction reports
give it) of the mIoU and of each class's IoU. A class absent in a run is left out of
that class's mean and marked; with fewer than two values the standard deviation is
undefined (``None``, shown as ``n/a``). :func:`format_markdown` and :func:`table_to_dict`
render the table; :mod:`tufl.evaluation.seed_runs` reads run folders and writes the files.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STD_NOTE = "sample standard deviation (n - 1 in the denominator); undefined (null, n/a) with fewer than 2 values"


@dataclass(frozen=True)
class RunResult:
    """The final validation of one run."""

    # How the run is named in the table (its folder name, e.g. "seed_0").
    label: str
    # Its experiment.seed when known.
    seed: int | None
    # Iteration of the validation record.
    iteration: int | None
    miou: float
    # Class name -> IoU in [0, 1]; None for a class absent from the ground truth.
    iou: Mapping[str, float | None]
    run_dir: str = ""


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of the values present (None: too few values)."""

    mean: float | None
    std: float | None
    # How many runs have a value; the others had the class absent.
    n: int
    # Labels of the runs without a value.
    absent_in: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeedTable:
    runs: tuple[RunResult, ...]
    class_names: tuple[str, ...]
    miou: Spread
    iou: dict[str, Spread] = field(default_factory=dict)


def value_or_none(value: Any) -> float | None:
    """A finite float, or None for a missing, null or NaN value."""
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def spread(values: Sequence[float | None], labels: Sequence[str]) -> Spread:
    """Mean and sample std of the non-missing ``values`` (``labels`` name their runs)."""
    present = list(map(value_or_none, values))
    kept = [v for v in present if v is not None]
    absent = tuple(label for label, v in zip(labels, present) if v is None)
    mean = statistics.fmean(kept) if kept else None
    std = statistics.stdev(kept) if len(kept) >= 2 else None
    return Spread(mean, std, len(kept), absent)


def result_from_record(record: Mapping[str, Any], label: str, seed: int | None = None,
                       run_dir: str = "") -> RunResult:
    """A run's result from its ``val`` record of metrics.jsonl (``{"iter", "miou", "iou": {...}}``)."""
    iou = record.get("iou")
    if not isinstance(iou, Mapping) or "miou" not in record:
        raise ValueError(f"{label}: the validation record has no miou and per-class iou")
    miou = value_or_none(record["miou"])
    if miou is None:
        raise ValueError(f"{label}: the validation record's miou is not a number")
    return RunResult(label=label, seed=seed, iteration=record.get("iter"), miou=miou,
                     iou={str(name): value_or_none(v) for name, v in iou.items()}, run_dir=run_dir)


def aggregate(runs: Sequence[RunResult]) -> SeedTable:
    """The table of ``runs`` (which must share their class names, in the same order)."""
    if not runs:
        raise ValueError("no runs to aggregate")
    names = tuple(runs[0].iou)
    for run in runs[1:]:
        if tuple(run.iou) != names:
            raise ValueError(f"{run.label} has other classes than {runs[0].label} "
                             f"({len(run.iou)} vs {len(names)}); only runs of the same class set aggregate")
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"runs must have distinct names, got {labels}")
    return SeedTable(
        runs=tuple(runs), class_names=names, miou=spread([run.miou for run in runs], labels),
        iou={name: spread([run.iou[name] for run in runs], labels) for name in names},
    )


def table_to_dict(table: SeedTable) -> dict[str, Any]:
    """The table as plain JSON values (fractions; None where undefined)."""
    def spread_dict(s: Spread) -> dict[str, Any]:
        return {"mean": s.mean, "std": s.std, "n": s.n, "absent_in": list(s.absent_in)}

    return {
        "std": STD_NOTE,
        "num_runs": len(table.runs),
        "miou": spread_dict(table.miou),
        "iou": {name: spread_dict(s) for name, s in table.iou.items()},
        "runs": [{"label": r.label, "seed": r.seed, "iteration": r.iteration, "run_dir": r.run_dir,
                  "miou": r.miou, "iou": dict(r.iou)} for r in table.runs],
    }


def format_markdown(table: SeedTable, title: str | None = None, notes: Sequence[str] = ()) -> str:
    """A Markdown table: one row per class and the mIoU, one column per run, then mean ± std (in %)."""
    runs = table.runs
    header = ["class", *(r.label for r in runs), "mean ± std"]
    rows = [header, ["---"] * len(header)]
    any_partial = False
    for name in table.class_names:
        s = table.iou[name]
        partial = bool(s.absent_in) and s.n > 0
        any_partial |= partial
        rows.append([name, *(_percent(r.iou[name]) for r in runs), _spread_cell(s) + (" *" if partial else "")])
    rows.append(["**mIoU**", *(f"**{_percent(r.miou)}**" for r in runs), f"**{_spread_cell(table.miou)}**"])
    lines = [f"# {title}", ""] if title else []
    lines.append(f"Final validation IoU (%) of {len(runs)} run{'s' if len(runs) != 1 else ''}; "
                 f"mean ± {STD_NOTE}.")
    lines.append("")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    footnotes = []
    if any_partial:
        footnotes.append("\\* absent (no ground-truth pixels) in some runs: the mean and std are over the "
                         "runs where the class is present.")
    if any(s.n == 0 for s in table.iou.values()):
        footnotes.append("absent: the class has no ground-truth pixels in the validation split of any run.")
    iterations = {r.iteration for r in runs}
    if len(iterations) > 1:
        footnotes.append("the runs were validated at different iterations: "
                         + ", ".join(f"{r.label} {r.iteration}" for r in runs) + ".")
    footnotes += list(notes)
    for footnote in footnotes:
        lines += ["", footnote]
    return "\n".join(lines) + "\n"


def _percent(value: float | None) -> str:
    return "absent" if value is None else f"{100.0 * value:.2f}"


def _spread_cell(s: Spread) -> str:
    if s.mean is None:
        return "absent"
    std = "n/a" if s.std is None else f"{100.0 * s.std:.2f}"
    return f"{100.0 * s.mean:.2f} ± {std}"
