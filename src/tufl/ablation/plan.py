"""The runs of a grid: every row x seed, plus the earlier stages each row starts from.

A row of stage S trains the chain's stages up to S, each from the checkpoint of the one
before (``model.pretrained``, as ``tufl demo`` chains them). Its own run is
``<out>/<row>/seed_<k>``; an earlier stage's run is shared by every row that trains it
alike (the same config and overrides, from the same run before it), in
``<out>/_before/<stage>[-<hash>]/seed_<k>``, or is a row's own run when one row measures
exactly that stage. Every run's config is loaded through the schema
(:func:`tufl.config.load_experiment`) before anything trains: :func:`plan_runs` raises a
:class:`~tufl.ablation.grid.GridError` naming the row and the key of every problem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tufl.ablation.grid import Grid, GridError, Row, split_stage
from tufl.ablation.scale import Setup
from tufl.demo.pipeline import stage_overrides
from tufl.objective.registry import MODES
from tufl.runtime.errors import ConfigError
from tufl.train.multi_seed import check_seeds, seed_folder

BEFORE_FOLDER = "_before"
# Keys tufl ablate sets on every run; a row setting one is refused.
OWNED_KEYS = {"experiment.output_dir": "the run folder <out>/<row>/seed_<k>",
              "experiment.seed": "--seeds"}
CHAINED_KEY = "model.pretrained"


@dataclass
class RunSpec:
    """One training run: ``tufl train --config config --set overrides...`` in ``run_dir``."""

    key: str
    stage: str
    seed: int
    config: Path
    overrides: tuple[str, ...]
    run_dir: Path
    # The key of the run whose checkpoint this one starts from.
    parent: str | None = None
    # The row this run is the result of (None: only an earlier stage of rows).
    row: str | None = None
    # The rows that start from this run.
    used_by: list[str] = field(default_factory=list)
    # The loaded, validated config (set by validation).
    cfg: Any = None

    @property
    def label(self) -> str:
        """``authors seed 0``; for an earlier stage's run its folder, ``_before/stage1 seed 0``."""
        where = self.row or f"{self.run_dir.parent.parent.name}/{self.run_dir.parent.name}"
        return f"{where} seed {self.seed}"


@dataclass(frozen=True)
class Plan:
    """The runs in training order (each after the run it starts from), by key."""

    runs: dict[str, RunSpec]
    rows: tuple[Row, ...]
    seeds: tuple[int, ...]
    stage: str

    def row_runs(self, row: str) -> dict[int, RunSpec]:
        return {spec.seed: spec for spec in self.runs.values() if spec.row == row}


def _key_of(item: str) -> str:
    return split_stage(item)[1].partition("=")[0].strip()


def _row_overrides(row: Row, stage: str, row_stage: str) -> tuple[str, ...]:
    """The row's overrides that reach ``stage``: plain ones on its own stage, ``STAGE:`` ones there."""
    out = []
    for item in row.overrides:
        prefix, rest = split_stage(item)
        if (prefix or row_stage) == stage:
            out.append(rest)
    return tuple(out)


def _identity(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]


class _Builder:
    """Builds the runs of one seed after another, sharing equal earlier-stage runs."""

    def __init__(self, setup: Setup, out: Path, common: Sequence[str]) -> None:
        self.setup, self.out, self.common = setup, out, list(common)
        self.runs: dict[str, RunSpec] = {}
        self.by_identity: dict[tuple[str, int], str] = {}

    def stage_overrides(self, row: Row, stage: str) -> tuple[str, ...]:
        """What a run of ``stage`` for ``row`` sets: the scale's, the command's ``--set``, the row's."""
        row_stage = row.stage or self.setup.stage
        return (*self.setup.overrides.get(stage, ()), *stage_overrides(self.common, stage),
                *_row_overrides(row, stage, row_stage))

    def chain_of(self, row: Row) -> tuple[str, ...]:
        stage = row.stage or self.setup.stage
        if stage not in self.setup.chain:
            raise GridError([f"row {row.name!r}: stage {stage} has no config here (the chain is "
                             f"{' -> '.join(self.setup.chain)}); add it to the grid's before: or --before"])
        return self.setup.chain[:self.setup.chain.index(stage) + 1]

    def add(self, row: Row, seed: int) -> None:
        """The runs of ``row`` with ``seed``: its chain's earlier stages (shared) and its own."""
        parent: str | None = None
        identity = ""
        chain = self.chain_of(row)
        for depth, stage in enumerate(chain):
            sets = self.stage_overrides(row, stage)
            identity = _identity(identity, stage, str(self.setup.configs[stage]), sets)
            own = depth == len(chain) - 1
            plain = not any(_row_overrides(row, s, chain[-1]) for s in chain[:depth + 1])
            folder = (self.out / row.name if own
                      else self.out / BEFORE_FOLDER / (stage if plain else f"{stage}-{identity}"))
            parent = self._run(row, seed, stage, sets, folder, parent, identity, own)

    def _run(self, row: Row, seed: int, stage: str, sets: tuple[str, ...], folder: Path, parent: str | None,
             identity: str, own: bool) -> str:
        shared = self.by_identity.get((identity, seed))
        if shared is not None and not own:  # an earlier stage trained alike: share it
            self.runs[shared].used_by.append(row.name)
            return shared
        run_dir = seed_folder(folder, seed)
        owned = [f"experiment.output_dir={run_dir}", f"experiment.seed={seed}"]
        if parent is not None:
            owned.append(f"{CHAINED_KEY}={self.runs[parent].run_dir / 'checkpoint_last.pt'}")
        key = str(run_dir.relative_to(self.out))
        self.runs[key] = RunSpec(key, stage, seed, self.setup.configs[stage], (*sets, *owned), run_dir, parent,
                                 row.name if own else None, [] if own else [row.name])
        self.by_identity.setdefault((identity, seed), key)
        return key


def _owned_key_problems(grid: Grid, common: Sequence[str]) -> list[str]:
    """Rows (and ``--set``) must leave the keys tufl ablate sets alone."""
    problems = []
    sources = [(f"row {row.name!r}", row.overrides) for row in grid.rows] + [("--set", tuple(common))]
    for where, items in sources:
        for item in items:
            key = _key_of(item)
            if key in OWNED_KEYS:
                problems.append(f"{where}: {key}: set by tufl ablate ({OWNED_KEYS[key]}); leave it out")
    return problems


def plan_runs(grid: Grid, setup: Setup, seeds: Sequence[int], out: Path, common: Sequence[str] = ()) -> Plan:
    """Every run of the grid, validated (see the module docstring); nothing is written."""
    try:
        seeds = check_seeds(seeds)
    except ConfigError as error:
        raise GridError(error.problems) from None
    wrong = [f"--set {item!r}: unknown stage {split_stage(item)[0]!r}; choose one of {', '.join(MODES)}"
             for item in common if split_stage(item)[0] not in (None, *MODES)]
    if wrong:
        raise GridError(wrong)
    builder = _Builder(setup, out, common)
    # Seed-major (every row's first seed first); rows of earlier stages first, so that a row
    # measuring an earlier stage of other rows is the run they start from.
    rows = sorted(grid.rows, key=lambda r: MODES.index(r.stage or setup.stage))
    for seed in seeds:
        for row in rows:
            builder.add(row, seed)
    plan = Plan(builder.runs, grid.rows, tuple(seeds), setup.stage)
    problems = _owned_key_problems(grid, common) + validate(plan, grid)
    if problems:
        raise GridError(problems)
    return plan


def _run_problems(spec: RunSpec) -> list[str]:
    """Load ``spec``'s config through the schema; its problems (the ConfigError's lines)."""
    from tufl.config import load_experiment

    try:
        spec.cfg = load_experiment(spec.config, spec.overrides)
    except ConfigError as error:
        return error.problems
    mode = spec.cfg.experiment.mode
    out = [] if mode == spec.stage else [f"{spec.config}: experiment.mode: trains {mode}, not {spec.stage}"]
    if spec.row is not None and spec.cfg.data.val is None:
        out.append(f"{spec.config}: data.val: not set, so the runs have no final validation to compare; "
                   "set it in the config or with --set data.val.name=... data.val.root=... data.val.split=val")
    return out


def _chained_problems(row: Row, spec: RunSpec, row_stage: str) -> list[str]:
    """A row must not set the checkpoint a chained run starts from (the run before it gives it)."""
    if spec.parent is None or CHAINED_KEY not in map(_key_of, _row_overrides(row, spec.stage, row_stage)):
        return []
    return [f"{CHAINED_KEY}: set by tufl ablate for a chained {spec.stage} run (the checkpoint of the "
            "stage before it); leave it out"]


def validate(plan: Plan, grid: Grid) -> list[str]:
    """Load every run's config (``RunSpec.cfg``); each problem once per row that meets it."""
    problems: dict[str, list[str]] = {row.name: [] for row in grid.rows}
    for spec in plan.runs.values():
        found = _run_problems(spec)
        for name in ([spec.row] if spec.row else []) + spec.used_by:
            row = grid.row(name)
            where = f"row {name!r}" + ("" if spec.row == name else f" (its {spec.stage} run)")
            for problem in found + _chained_problems(row, spec, row.stage or plan.stage):
                line = f"{where}: {problem}"
                if line not in problems[name]:
                    problems[name].append(line)
    return [line for lines in problems.values() for line in lines]
