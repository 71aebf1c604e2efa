"""Run folders -> the seed table (:mod:`tufl.evaluation.seeds`) and its files.

A run's result is its last ``val`` record in ``metrics.jsonl`` (the validation at the
end of training); its seed is the ``experiment.seed`` of its ``config.yaml``. The
table is written as ``seeds.json`` (fractions) and ``seeds.md`` (percent).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import yaml

from tufl.runtime.atomic import atomic_write_json, atomic_write_text
from tufl.data.io import BadFileError
from tufl.evaluation.seeds import RunResult, SeedTable, format_markdown, result_from_record, table_to_dict
from tufl.runtime.run_log import read_metrics

JSON_NAME = "seeds.json"
MARKDOWN_NAME = "seeds.md"


def run_seed(run_dir: str | Path) -> int | None:
    """The ``experiment.seed`` of a run's ``config.yaml`` (None when it cannot be read)."""
    try:
        tree = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
        seed = tree["experiment"]["seed"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def read_run_result(run_dir: str | Path, label: str | None = None) -> RunResult:
    """The final validation of the run in ``run_dir`` (its last ``val`` record)."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    records = read_metrics(run_dir, "val")
    if not records:
        problem = ("no validation record (kind 'val'): the run had no data.val or has not reached a validation; "
                   "evaluate its checkpoint instead (tufl evaluate --aggregate ... --evaluate)")
        raise BadFileError(metrics, problem if metrics.is_file() else "missing: is this a tufl run folder?")
    try:
        return result_from_record(records[-1], label or run_dir.name, run_seed(run_dir), str(run_dir))
    except ValueError as error:
        raise BadFileError(metrics, str(error)) from error


def run_labels(run_dirs: Sequence[str | Path]) -> list[str]:
    """Short distinct names of run folders: their paths below the common parent."""
    paths = [Path(os.path.abspath(p)) for p in run_dirs]
    if len(paths) == 1:
        return [paths[0].name]
    parent = Path(os.path.commonpath(paths))
    labels = [p.relative_to(parent).as_posix() or p.name for p in paths]
    if len(set(labels)) != len(labels):
        raise ValueError(f"the same run folder is given twice: {', '.join(map(str, run_dirs))}")
    return labels


def common_folder(run_dirs: Sequence[str | Path]) -> Path:
    """Where the table of ``run_dirs`` goes by default: their common parent folder."""
    paths = [Path(os.path.abspath(p)) for p in run_dirs]
    return paths[0].parent if len(paths) == 1 else Path(os.path.commonpath(paths))


def write_seed_table(table: SeedTable, folder: str | Path, title: str | None = None,
                     notes: Sequence[str] = ()) -> tuple[Path, Path, str]:
    """Write ``seeds.json`` and ``seeds.md`` into ``folder``; returns their paths and the Markdown."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    content = table_to_dict(table)
    if notes:
        content["notes"] = list(notes)
    markdown = format_markdown(table, title, notes)
    json_path = atomic_write_json(folder / JSON_NAME, content)
    md_path = atomic_write_text(folder / MARKDOWN_NAME, markdown)
    return json_path, md_path, markdown
