"""``tufl train --seeds 0 1 2``: one run of a config per seed, then the table of their spread.

The runs go to ``<run_dir>/seed_<s>`` (``run_dir`` being the config's
``experiment.output_dir`` or ``runs/<name>``) with ``experiment.seed = s``, one after
the other. With ``--resume auto|force`` an interrupted job continues: a seed that
finished (its ``run_info.json`` says so, or its last checkpoint is at ``train.iters``)
is not rerun, an interrupted one resumes from its checkpoint. Without ``--resume`` a
seed folder holding a checkpoint is refused before anything trains. Each run holds its seed
folder's lock while it trains (:mod:`tufl.train.run_folder`): a seed folder another live process
trains in stops the job (status 2), naming that process. After the runs,
``seeds.json`` and ``seeds.md`` (:mod:`tufl.evaluation.seed_runs`) land in ``run_dir``.

Exit status: a run stopped by a signal (3) or by bad input (2) ends the job at once
(no table); a run stopped by an error of its own (1) is reported and left out of the
table while the other seeds still run; the job's status is the worst of the runs'.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from tufl.evaluation.seed_runs import read_run_result, write_seed_table
from tufl.evaluation.seeds import aggregate
from tufl.runtime.errors import ConfigError
from tufl.train.config import RunConfig
from tufl.runtime import checkpoint_files as ckpt
from tufl.runtime.stop_signals import PREEMPTED_EXIT_STATUS
from tufl.train.run_state import ResumeMode, config_differences

# Statuses that end the job at once: a signal (resumable) and bad input (every seed would fail).
STOPPING_STATUSES = (PREEMPTED_EXIT_STATUS, 2)


def seed_folder(run_dir: str | Path, seed: int) -> Path:
    """The run folder of one seed: ``<run_dir>/seed_<seed>``."""
    return Path(run_dir) / f"seed_{seed}"


def seed_config(cfg: RunConfig, seed: int) -> RunConfig:
    """``cfg`` for one seed: its own ``experiment.seed`` and run folder."""
    experiment = dataclasses.replace(cfg.experiment, seed=seed,
                                     output_dir=str(seed_folder(cfg.experiment.run_dir, seed)))
    return dataclasses.replace(cfg, experiment=experiment)  # type: ignore[type-var]


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds, each once; a ConfigError otherwise."""
    if not seeds:
        raise ConfigError(["--seeds: give at least one seed"])
    if len(set(seeds)) != len(seeds):
        raise ConfigError([f"--seeds: give each seed once, got {' '.join(map(str, seeds))}"])
    return list(seeds)


def refuse_existing_runs(configs: Sequence[RunConfig]) -> None:
    """Without --resume no seed folder may hold a run (checked before anything trains)."""
    for cfg in configs:
        versions = ckpt.checkpoint_versions(cfg.experiment.run_dir / ckpt.LAST_NAME)
        if versions:
            raise FileExistsError(
                f"{cfg.experiment.run_dir} already holds a run ({versions[0].name}); pass --resume auto to "
                "continue the seeds (finished ones are kept, not rerun) or choose another experiment.output_dir")


def finished_run(cfg: RunConfig, force: bool = False) -> int | None:
    """The iteration the run of ``cfg`` (one seed's config) finished at, None when it has not.

    Finished: its ``run_info.json`` records ``last_iteration >= train.iters`` for the same
    ``train.iters``, or its last checkpoint is at ``train.iters``. A finished run of a
    different config (operational keys aside) is refused with the differing keys, or
    with ``force`` kept as it is.
    """
    root = cfg.experiment.run_dir
    iters = cfg.train.iters
    info = _read_json(root / "run_info.json") or {}
    last = info.get("last_iteration")
    stored: Any = None
    if not (info.get("iterations") == iters and isinstance(last, int) and last >= iters):
        peeked = _peek_newest_checkpoint(root / ckpt.LAST_NAME)
        if peeked is None or peeked[0] < iters:
            return None
        last, stored = peeked
    if stored is None:
        stored = read_yaml(root / "config.yaml")
    differences = config_differences(stored, cfg) if isinstance(stored, dict) else []
    if differences:
        listed = "\n  ".join(differences)
        if not force:
            raise ConfigError([f"{root} holds a finished run of a different config. Differing keys:\n  {listed}\n"
                               "Use the config it was trained with, another experiment.output_dir, or "
                               "--resume force to keep that run as it is"])
        print(f"[tufl] --resume force: keeping the finished run in {root} although its config differs:\n  {listed}",
              flush=True)
    return int(last)


def train_seeds(cfg: RunConfig, seeds: Sequence[int], resume: ResumeMode, train_one: Callable[[RunConfig], int],
                stop_requested: Callable[[], str | None] = lambda: None, is_main: bool = True) -> int:
    """Train ``cfg`` once per seed with ``train_one`` (a run -> its exit status), then write the
    table; returns the job's exit status (see the module docstring). ``stop_requested`` names a
    stop signal that arrived between two runs."""

    def say(message: str, error: bool = False) -> None:
        if is_main:
            print(message, file=sys.stderr if error else sys.stdout, flush=True)

    seeds = check_seeds(seeds)
    configs = [seed_config(cfg, seed) for seed in seeds]
    if resume == "never":
        refuse_existing_runs(configs)
    if cfg.data.val is None:
        say("[tufl] note: data.val is not set, so the runs will have no final validation to aggregate")
    statuses: dict[int, int] = {}
    for k, (seed, seed_cfg) in enumerate(zip(seeds, configs), start=1):
        folder = seed_cfg.experiment.run_dir
        done = finished_run(seed_cfg, force=resume == "force") if resume != "never" else None
        if done is not None:
            say(f"[tufl] seed {seed} ({k} of {len(seeds)}): finished earlier (iteration {done}) in {folder}; "
                "not rerun")
            statuses[seed] = 0
            continue
        signal_name = stop_requested()
        if signal_name:
            say(f"[tufl] stopped by {signal_name} before seed {seed}; the finished seeds are kept. Resume with: "
                f"tufl train --config ... --seeds ... --resume auto (exit status {PREEMPTED_EXIT_STATUS})", error=True)
            return PREEMPTED_EXIT_STATUS
        say(f"[tufl] seed {seed} ({k} of {len(seeds)}): run folder {folder}")
        status = statuses[seed] = train_one(seed_cfg)
        if status in STOPPING_STATUSES:
            later = " ".join(map(str, seeds[k:]))
            say(f"[tufl] seed {seed} stopped with exit status {status}"
                + (f"; seeds not run: {later}" if later else "")
                + ("; rerun the same command with --resume auto to continue" if status == PREEMPTED_EXIT_STATUS
                   else ""), error=True)
            return status
        if status:
            say(f"[tufl] seed {seed}: the run failed (exit status {status}); it is left out of the table", error=True)
    worst = max(statuses.values())
    if is_main:
        _write_table(cfg, seeds, configs, statuses, say)
    return worst


def _write_table(cfg: RunConfig, seeds: Sequence[int], configs: Sequence[RunConfig], statuses: dict[int, int],
                 say: Callable[..., None]) -> None:
    """The seed table of the finished runs (``seeds.json``, ``seeds.md`` in the run folder)."""
    if cfg.data.val is None:
        say("[tufl] nothing to aggregate: data.val is not set, so the runs have no final validation. Set data.val, "
            "or evaluate their checkpoints: tufl evaluate --aggregate "
            f"{' '.join(str(c.experiment.run_dir) for c in configs)} --evaluate --config CONFIG_WITH_DATA_VAL")
        return
    kept = [c for seed, c in zip(seeds, configs) if statuses[seed] == 0]
    if not kept:
        say("[tufl] nothing to aggregate: no run finished", error=True)
        return
    notes = [f"seed {seed}: the run failed (exit status {statuses[seed]}) and is left out."
             for seed in seeds if statuses[seed]]
    table = aggregate([read_run_result(c.experiment.run_dir) for c in kept])
    json_path, md_path, markdown = write_seed_table(
        table, cfg.experiment.run_dir, f"{cfg.experiment.name}, seeds {' '.join(map(str, seeds))}", notes)
    print(markdown, end="")
    print(f"[tufl] wrote {json_path} and {md_path}", flush=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_yaml(path: Path) -> Any:
    """A YAML file's content; None when it cannot be read or parsed."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _peek_newest_checkpoint(last: Path) -> tuple[int, Any] | None:
    """The iteration and stored config of the newest readable version of ``last`` (a pending one
    first: a save stopped before its rename), or None when there is none."""
    for path in ckpt.checkpoint_versions(last):
        peeked = _peek_checkpoint(path)
        if peeked is not None:
            return peeked
    return None


def _peek_checkpoint(path: Path) -> tuple[int, Any] | None:
    """The iteration and stored config of a checkpoint (memory-mapped, so cheap), or None
    when it is missing or unreadable (the run then decides what to do with it)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    if not isinstance(state, dict) or not isinstance(state.get("iteration"), int):
        return None
    return state["iteration"], state.get("config")
