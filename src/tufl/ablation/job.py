"""``tufl ablate`` from start to end: read and validate the grid, train its runs, write the table.

Exit status: 0 every run finished; 1 some run failed (the table shows it as failed);
3 stopped by a signal (rerun the same command to continue: finished runs are skipped,
stopped ones resume). Bad input (the grid, a row's config) raises a
:class:`~tufl.ablation.grid.GridError` before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tufl.ablation.execute import STOPPED, Runner, stop_on_signals, train_command
from tufl.ablation.grid import Grid, GridError, parse_grid
from tufl.ablation.output import JSON_NAME, MARKDOWN_NAME, cell, signed_cell, write_outputs
from tufl.ablation.plan import Plan, RunSpec, plan_runs
from tufl.ablation.scale import DEMO_DATA_SEED, Setup, demo_setup, full_setup
from tufl.ablation.table import AblationTable, RowTable, build_table
from tufl.evaluation.seed_runs import read_run_result
from tufl.runtime.atomic import atomic_write_json
from tufl.runtime.errors import DataError
from tufl.runtime.stop_signals import PREEMPTED_EXIT_STATUS

PLAN_NAME = "plan.json"
REPORT_FOLDER = "report"


@dataclass(frozen=True)
class AblationOptions:
    """The choices of ``tufl ablate``."""

    grid: Path
    out: Path
    seeds: tuple[int, ...] = (0, 1, 2)
    config: str | None = None
    before: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    scale: str = "full"
    quick: bool = False
    data_dir: Path | None = None
    baseline: str | None = None
    jobs: int = 1
    report: bool = False
    workers: int = 2
    data_seed: int = DEMO_DATA_SEED
    rows: tuple[str, ...] = ()


def prepare(options: AblationOptions) -> tuple[Grid, Setup, Plan, str]:
    """The grid, its setup, its validated plan and the baseline row; nothing is written."""
    if options.jobs < 1:
        raise GridError([f"--jobs: give at least 1, got {options.jobs}"])
    grid = select_rows(parse_grid(options.grid), options.rows)
    out = options.out.absolute()  # the runs' paths (output folders, chained checkpoints) hold from any folder
    if options.scale == "demo":
        if options.config is not None or options.before:
            raise GridError(["--config, --before: not with --scale demo, which trains the demo's configs"])
        setup = demo_setup(grid, (options.data_dir or out / "data").absolute(), options.quick, options.workers,
                           options.data_seed)
    else:
        if options.quick or options.data_seed != DEMO_DATA_SEED:
            raise GridError(["--quick, --data-seed: only with --scale demo"])
        setup = full_setup(grid, options.config, options.before)
    baseline = options.baseline or grid.baseline or grid.rows[0].name
    if baseline not in [row.name for row in grid.rows]:
        raise GridError([f"--baseline {baseline!r}: not a row of {grid.path}; rows: "
                         + ", ".join(row.name for row in grid.rows)])
    return grid, setup, plan_runs(grid, setup, options.seeds, out, options.overrides), baseline


def select_rows(grid: Grid, names: tuple[str, ...]) -> Grid:
    """The grid with only the rows named (all of them when none is); an unknown name is refused."""
    if not names:
        return grid
    known = [row.name for row in grid.rows]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise GridError([f"--rows {', '.join(unknown)}: not a row of {grid.path}; rows: {', '.join(known)}"])
    return replace(grid, rows=tuple(row for row in grid.rows if row.name in names))


def describe(spec: RunSpec) -> str:
    """``; mIoU 45.12`` for a run with a final validation record (else nothing)."""
    try:
        return f"; mIoU {100 * read_run_result(spec.run_dir).miou:.2f}"
    except (DataError, OSError, ValueError):
        return ""


def _write_plan(plan: Plan, out: Path, grid: Grid, setup: Setup) -> None:
    runs = [{"run": spec.key, "stage": spec.stage, "seed": spec.seed, "row": spec.row, "used_by": spec.used_by,
             "starts_from": spec.parent, "command": train_command(spec)} for spec in plan.runs.values()]
    atomic_write_json(out / PLAN_NAME, {"grid": str(grid.path), "setup": setup.description,
                                        "seeds": list(plan.seeds), "runs": runs})


def _announce(plan: Plan, grid: Grid, setup: Setup, out: Path, say: Callable[[str], None]) -> None:
    own = sum(1 for spec in plan.runs.values() if spec.row is not None)
    shared = len(plan.runs) - own
    say(f"[ablate] grid {grid.path}: {len(grid.rows)} rows x {len(plan.seeds)} seeds = {own} runs"
        + (f" + {shared} earlier-stage runs they start from" if shared else "") + f"; {setup.description}")
    say(f"[ablate] output: {out} (a rerun skips finished runs and resumes unfinished ones)")


def _linked_report(table: AblationTable, out: Path, say: Callable[[str], None]) -> str | None:
    """``tufl report`` of each row's first finished run (curves, per-class IoU), linked from the page."""
    from tufl.report.build import ReportOptions, report_runs

    firsts = [(row.row.name, row.finished[0].run_dir) for row in table.rows if row.finished]
    if not firsts:
        return None
    options = ReportOptions(labels=tuple(name for name, _ in firsts), samples=0, device="cpu",
                            title=f"{table.title}: the first finished seed of each row")
    try:
        report_runs([path for _, path in firsts], out / REPORT_FOLDER, options)
    except (DataError, ValueError, OSError) as error:
        say(f"[ablate] no linked report: {error}")
        return None
    return f"{REPORT_FOLDER}/index.html"


def run_ablation(options: AblationOptions, say: Callable[[str], None] = print) -> int:
    """The whole command (see the module docstring); returns its exit status."""
    grid, setup, plan, baseline = prepare(options)
    out = options.out.absolute()
    _announce(plan, grid, setup, out, say)
    out.mkdir(parents=True, exist_ok=True)
    _write_plan(plan, out, grid, setup)
    if setup.prepare is not None:
        setup.prepare(next(iter(plan.runs.values())).cfg)
    runner = Runner(plan, out, options.jobs, say, describe)
    with stop_on_signals(runner):
        outcomes = runner.run()
    table = build_table(plan, outcomes, baseline, grid.title)
    report = _linked_report(table, out, say) if options.report else None
    page = write_outputs(table, out, report)
    for row in table.rows:
        say(f"[ablate] {row.row.name:<24} {row.status:<8} mIoU {row_summary(row)}")
    say(f"[ablate] table: {out / MARKDOWN_NAME}, {out / JSON_NAME}; page: {page}")
    if any(o.status == STOPPED for o in outcomes.values()):
        say(f"[ablate] stopped by {runner.stop_signal or 'a signal'}; rerun the same command to continue "
            f"(exit status {PREEMPTED_EXIT_STATUS})")
        return PREEMPTED_EXIT_STATUS
    return 0 if all(o.ok for o in outcomes.values()) else 1


def row_summary(row: RowTable) -> str:
    """``45.12 ± 0.53 (n=3), Δ -1.10 ± 0.40 (n=3) vs authors``."""
    text = f"{cell(row.miou)} (n={row.miou.n})"
    if row.paired is not None and row.paired.miou.n:
        text += f", Δ {signed_cell(row.paired.miou)} (n={row.paired.miou.n}) vs {row.paired.baseline}"
    return text
