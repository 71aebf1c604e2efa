"""The ablation table: per row, the mean ± sample standard deviation over seeds of the final
mIoU and of each class's IoU, and the paired difference to a baseline row.

Each run's result is its last ``val`` record in ``metrics.jsonl``
(:func:`tufl.evaluation.seed_runs.read_run_result`, the validation at the end of
training). The paired difference of a row to the baseline pairs the runs of the same
seed: ``d_k = row_k - baseline_k`` for every seed ``k`` both finished, then the mean and
the sample standard deviation (``n - 1``) of the ``d_k`` and their count ``n``. The
seeds' common part (a lucky seed lifts both rows) cancels, so the spread of the ``d_k``
is usually far smaller than the rows' own. A run that failed is kept in the table as
failed (with its reason), never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tufl.ablation.execute import Outcome
from tufl.ablation.grid import Row
from tufl.ablation.plan import Plan
from tufl.evaluation.seed_runs import read_run_result
from tufl.evaluation.seeds import STD_NOTE, RunResult, Spread, spread
from tufl.runtime.errors import DataError


@dataclass(frozen=True)
class SeedRun:
    """One row's run of one seed: its result, or why it has none."""

    seed: int
    run_dir: str
    result: RunResult | None
    status: str
    reason: str = ""


@dataclass(frozen=True)
class Paired:
    """The paired difference of a row to the baseline over the seeds both finished."""

    baseline: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    miou: Spread
    iou: dict[str, Spread] = field(default_factory=dict)


@dataclass(frozen=True)
class RowTable:
    row: Row
    runs: tuple[SeedRun, ...]
    miou: Spread
    iou: dict[str, Spread]
    paired: Paired | None

    @property
    def finished(self) -> list[SeedRun]:
        return [r for r in self.runs if r.result is not None]

    @property
    def status(self) -> str:
        """ok (every seed finished), partial, stopped (none finished; resumable) or failed."""
        n = len(self.finished)
        if n == len(self.runs):
            return "ok"
        if n:
            return "partial"
        return "stopped" if all(r.status == "stopped" for r in self.runs) else "failed"


@dataclass(frozen=True)
class AblationTable:
    title: str
    stage: str
    baseline: str
    seeds: tuple[int, ...]
    class_names: tuple[str, ...]
    rows: tuple[RowTable, ...]


def seed_run(seed: int, run_dir: str, outcome: Outcome | None) -> SeedRun:
    """The result of a run that finished (its last val record), else its failure."""
    if outcome is None or not outcome.ok:
        status = outcome.status if outcome is not None else "not run"
        return SeedRun(seed, run_dir, None, status, outcome.reason if outcome is not None else "")
    try:
        return SeedRun(seed, run_dir, read_run_result(run_dir, f"seed {seed}"), "ok")
    except (DataError, OSError) as error:
        return SeedRun(seed, run_dir, None, "failed", f"no result: {error}")


def _spreads(runs: Sequence[SeedRun], names: Sequence[str]) -> tuple[Spread, dict[str, Spread]]:
    done = [r for r in runs if r.result is not None]
    labels = [f"seed {r.seed}" for r in done]
    miou = spread([r.result.miou for r in done if r.result is not None], labels)
    iou = {name: spread([r.result.iou.get(name) for r in done if r.result is not None], labels) for name in names}
    return miou, iou


def paired(runs: Sequence[SeedRun], base: Sequence[SeedRun], baseline: str, names: Sequence[str]) -> Paired:
    """Per seed both finished, row minus baseline; the mean and sample std of those differences."""
    by_seed = {r.seed: r.result for r in base if r.result is not None}
    pairs = [(r.seed, r.result, by_seed[r.seed]) for r in runs if r.result is not None and r.seed in by_seed]
    labels = [f"seed {seed}" for seed, _, _ in pairs]
    differences = tuple(a.miou - b.miou for _, a, b in pairs)

    def class_difference(a: RunResult, b: RunResult, name: str) -> float | None:
        x, y = a.iou.get(name), b.iou.get(name)
        return None if x is None or y is None else x - y

    iou = {name: spread([class_difference(a, b, name) for _, a, b in pairs], labels) for name in names}
    return Paired(baseline, tuple(seed for seed, _, _ in pairs), differences, spread(differences, labels), iou)


def build_table(plan: Plan, outcomes: Mapping[str, Outcome], baseline: str, title: str) -> AblationTable:
    """The table of the plan's rows (in grid order) from their runs' files."""
    rows_runs = {}
    for row in plan.rows:
        specs = plan.row_runs(row.name)
        rows_runs[row.name] = tuple(seed_run(seed, str(specs[seed].run_dir), outcomes.get(specs[seed].key))
                                    for seed in plan.seeds)
    first = next((r.result for runs in rows_runs.values() for r in runs if r.result is not None), None)
    names = tuple(first.iou) if first is not None else ()
    tables = []
    for row in plan.rows:
        runs = rows_runs[row.name]
        miou, iou = _spreads(runs, names)
        pair = None if row.name == baseline else paired(runs, rows_runs[baseline], baseline, names)
        tables.append(RowTable(row, runs, miou, iou, pair))
    return AblationTable(title, plan.stage, baseline, plan.seeds, names, tuple(tables))


def _spread_dict(s: Spread) -> dict[str, Any]:
    return {"mean": s.mean, "std": s.std, "n": s.n}


def _row_dict(row: RowTable) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": row.row.name, "note": row.row.note, "set": list(row.row.overrides), "stage": row.row.stage,
        "status": row.status, "miou": _spread_dict(row.miou),
        "iou": {name: _spread_dict(s) for name, s in row.iou.items()},
        "runs": [{"seed": r.seed, "run_dir": r.run_dir, "status": r.status, "reason": r.reason,
                  "iteration": r.result.iteration if r.result else None,
                  "miou": r.result.miou if r.result else None,
                  "iou": dict(r.result.iou) if r.result else None} for r in row.runs],
    }
    if row.paired is not None:
        p = row.paired
        out["vs_baseline"] = {"baseline": p.baseline, **_spread_dict(p.miou), "seeds": list(p.seeds),
                              "differences": list(p.differences),
                              "iou": {name: _spread_dict(s) for name, s in p.iou.items()}}
    return out


def table_to_dict(table: AblationTable) -> dict[str, Any]:
    """The table as plain JSON values (fractions in [0, 1]; None where undefined)."""
    return {
        "title": table.title, "stage": table.stage, "baseline": table.baseline, "seeds": list(table.seeds),
        "std": STD_NOTE,
        "paired": "vs_baseline: per seed both finished, row minus baseline; mean, sample std (n - 1) and n "
                  "of those differences",
        "class_names": list(table.class_names), "rows": [_row_dict(row) for row in table.rows],
    }
