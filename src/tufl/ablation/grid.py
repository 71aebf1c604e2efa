"""Grid files: the rows of an ablation, each a name and its ``--set`` overrides.

A grid file (YAML)::

    title: Stage two (CIM) components        # optional, shown on the table
    stage: stage2                            # the stage the rows train and compare
    config: ../gta5_cityscapes/bisenet_stage2.yaml   # default --config (relative to this file)
    before: {stage1: ../gta5_cityscapes/bisenet_stage1.yaml}   # stages trained first, per seed
    baseline: authors                        # default --baseline (else the first row)
    rows:
      - name: authors
        note: the authors' protocol          # optional, shown on the table
        set: []
      - name: dual_soft
        set: [mix.mode=dual_soft]            # or a mapping {mix.mode: dual_soft}
      - name: stage1_gamma0
        set: ["stage1:loss.tufl.gamma=0"]    # STAGE:KEY=VALUE reaches that earlier stage

Overrides are ``tufl train --set`` strings, parsed by the same code
(:func:`tufl.runtime.typed_config.apply_overrides`); a mapping's values are written as
JSON, which that YAML parser reads back unchanged. A plain ``KEY=VALUE`` reaches the
row's own stage; ``STAGE:KEY=VALUE`` (the prefix of ``tufl demo --set``) the earlier
stage ``STAGE`` the row starts from. A row may name another ``stage`` (e.g. a
``source_only`` reference row in a stage-one grid).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tufl.objective.registry import MODES
from tufl.runtime.errors import ConfigError

GRID_KEYS = ("title", "stage", "config", "before", "baseline", "rows")
ROW_KEYS = ("name", "note", "set", "stage")
# Row names become folder names: letters, digits, "_", "-", "." (not first).
ROW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class GridError(ConfigError):
    """Problems of a grid file or of its rows' configs, each naming the row and the key."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(problems)
        self.args = ("the ablation grid cannot run (nothing was run):\n  " + "\n  ".join(self.problems),)


@dataclass(frozen=True)
class Row:
    """One row: its name, its overrides (``KEY=VALUE`` or ``STAGE:KEY=VALUE``) and its stage
    (None: the grid's)."""

    name: str
    overrides: tuple[str, ...] = ()
    stage: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Grid:
    """A parsed grid file; paths are resolved against the file's folder."""

    path: Path
    rows: tuple[Row, ...]
    title: str = ""
    stage: str | None = None
    config: Path | None = None
    before: dict[str, Path] = field(default_factory=dict)
    baseline: str | None = None

    def row(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)


def split_stage(item: str) -> tuple[str | None, str]:
    """``STAGE:KEY=VALUE`` -> (STAGE, ``KEY=VALUE``); a plain ``KEY=VALUE`` -> (None, item). A
    colon after the ``=`` (a path value) is part of the value."""
    prefix, colon, rest = item.partition(":")
    if colon and "=" not in prefix:
        return prefix.strip(), rest
    return None, item


def _overrides(raw: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    """A row's ``set``: a list of ``--set`` strings or a mapping KEY -> value."""
    if raw is None:
        return ()
    if isinstance(raw, dict):
        raw = [f"{key}={json.dumps(value)}" for key, value in raw.items()]
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        problems.append(f"{where}: set: expected a list of KEY=VALUE strings or a mapping KEY: value, got {raw!r}")
        return ()
    out = []
    for item in raw:
        stage, rest = split_stage(item)
        if stage is not None and stage not in MODES:
            problems.append(f"{where}: set: {item!r}: unknown stage {stage!r}; choose one of {', '.join(MODES)}")
        elif "=" not in rest:
            problems.append(f"{where}: set: {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-4")
        out.append(item)
    return tuple(out)


def _mapping_problems(raw: dict[str, Any], known: Sequence[str], what: str, prefix: str) -> list[str]:
    """The unknown keys of a grid's or a row's mapping, and a ``stage`` that is not a mode."""
    out = []
    unknown = sorted(set(raw) - set(known))
    if unknown:
        out.append(f"{prefix}unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                   f"(a {what} has {', '.join(known)})")
    stage = raw.get("stage")
    if stage is not None and stage not in MODES:
        out.append(f"{prefix}stage: expected one of {', '.join(MODES)}, got {stage!r}")
    return out


def _row(raw: Any, index: int, problems: list[str]) -> Row | None:
    if not isinstance(raw, dict):
        problems.append(f"row {index + 1}: expected a mapping with a name and set, got {raw!r}")
        return None
    name = raw.get("name")
    where = f"row {name!r}" if isinstance(name, str) else f"row {index + 1}"
    if not isinstance(name, str) or not ROW_NAME.fullmatch(name):
        problems.append(f"{where}: name: give a folder-safe name (letters, digits, _ - .), got {name!r}")
    problems += _mapping_problems(raw, ROW_KEYS, "row", f"{where}: ")
    stage = raw.get("stage") if raw.get("stage") in MODES else None
    note = raw.get("note") or ""
    return Row(str(name), _overrides(raw.get("set"), where, problems), stage, str(note))


def _paths(raw: dict[str, Any], folder: Path, problems: list[str]) -> tuple[Path | None, dict[str, Path]]:
    """The grid's ``config`` and ``before`` paths, relative to the grid file."""
    config = raw.get("config")
    if config is not None and not isinstance(config, str):
        problems.append(f"config: expected a path, got {config!r}")
        config = None
    before = raw.get("before") or {}
    if not isinstance(before, dict) or not all(isinstance(v, str) for v in before.values()):
        problems.append(f"before: expected a mapping STAGE: config path, got {before!r}")
        before = {}
    for stage in before:
        if stage not in MODES:
            problems.append(f"before: unknown stage {stage!r}; choose from {', '.join(MODES)}")
    return (folder / config if config else None), {s: folder / p for s, p in before.items() if s in MODES}


def _check_rows(rows: list[Row], baseline: Any, problems: list[str]) -> None:
    names = [row.name for row in rows]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        problems.append(f"rows: names must be distinct, repeated: {', '.join(twice)}")
    if baseline is not None and baseline not in names:
        problems.append(f"baseline: {baseline!r} is not a row; rows: {', '.join(names)}")


def parse_grid(path: str | Path) -> Grid:
    """The grid of a YAML file; a :class:`GridError` lists every problem, each naming its row."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise GridError([f"{path}: cannot read the grid file ({error.strerror or error})"]) from None
    except yaml.YAMLError as error:
        raise GridError([f"{path}: not valid YAML: {error}"]) from None
    if not isinstance(raw, dict):
        raise GridError([f"{path}: the top level must be a mapping with rows:, got {type(raw).__name__}"])
    problems = _mapping_problems(raw, GRID_KEYS, "grid", "")
    rows_raw = raw.get("rows")
    if not isinstance(rows_raw, list) or not rows_raw:
        problems.append("rows: give a non-empty list of rows (name and set)")
        rows_raw = []
    rows = [row for i, item in enumerate(rows_raw) if (row := _row(item, i, problems)) is not None]
    _check_rows(rows, raw.get("baseline"), problems)
    config, before = _paths(raw, path.parent, problems)
    if problems:
        raise GridError([f"{path}: {p}" for p in problems])
    return Grid(path, tuple(rows), str(raw.get("title") or path.stem), raw.get("stage"), config, before,
                raw.get("baseline"))
