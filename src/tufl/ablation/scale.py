"""Where an ablation's runs get their configs: the grid's (or ``--config``/``--before``) files,
or the built-in demo's data and schedule (``--scale demo``).

A :class:`Setup` names, per stage of the chain (the stages trained one after the other,
each starting from the checkpoint of the one before), its config file and the
overrides the scale adds before a row's own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tufl.ablation.grid import Grid, GridError
from tufl.objective.registry import MODES
from tufl.runtime.typed_config import read_config_tree

SCALES = ("full", "demo")
# The default data seed of the demo scale: every training seed sees the same generated
# scenes. Another data seed generates other scenes (a disjoint split to check decisions on).
DEMO_DATA_SEED = 0


@dataclass(frozen=True)
class Setup:
    """The configs of the chain's stages (in training order) and what the scale adds to each."""

    configs: dict[str, Path]
    stage: str
    overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Runs before the first training (the demo's data generation), given one loaded run config.
    prepare: Callable[[Any], None] | None = None
    description: str = ""

    @property
    def chain(self) -> tuple[str, ...]:
        return tuple(self.configs)


def _mode_of(path: Path) -> str:
    """The ``experiment.mode`` a config file trains (its files merged; the schema default if unset)."""
    from tufl.train.config import ExperimentConfig

    tree, _ = read_config_tree(path)
    mode = (tree.get("experiment") or {}).get("mode", ExperimentConfig().mode)
    return str(mode)


def parse_before(items: Sequence[str]) -> dict[str, Path]:
    """``--before STAGE=CONFIG`` values."""
    out: dict[str, Path] = {}
    for item in items:
        stage, eq, path = item.partition("=")
        if not eq or stage not in MODES or not path:
            raise GridError([f"--before {item!r}: expected STAGE=CONFIG with STAGE one of {', '.join(MODES)}"])
        out[stage] = Path(path)
    return out


def _ordered_chain(before: dict[str, Path], stage: str, config: Path) -> dict[str, Path]:
    """The chain's configs in training order; an error for a stage that does not come before ``stage``."""
    late = [s for s in before if MODES.index(s) >= MODES.index(stage)]
    if late:
        raise GridError([f"before: {', '.join(late)} does not come before the grid's stage {stage}"])
    chain = {s: before[s] for s in MODES if s in before}
    chain[stage] = config
    return chain


def full_setup(grid: Grid, config: str | None, before: Sequence[str]) -> Setup:
    """The grid at the scale of its configs: ``--config`` (else the grid's ``config:``) for the
    grid's stage; the earlier stages from ``--before`` and, with the grid's own config, its
    ``before:``. Without an earlier stage the chain starts from the config's ``model.pretrained``."""
    if config is None and grid.config is None:
        raise GridError([f"{grid.path}: the grid names no config: give --config BASE.yaml (or --scale demo)"])
    base = Path(config) if config is not None else grid.config
    assert base is not None
    stated = dict(grid.before) if config is None else {}
    stated.update(parse_before(before))
    try:
        mode = _mode_of(base)
    except ValueError as error:  # a ConfigError: the file is missing or not a config
        raise GridError([str(error)]) from None
    stage = grid.stage or mode
    return Setup(_ordered_chain(stated, stage, base), stage, description=f"configs: {base}")


def demo_setup(grid: Grid, data_dir: Path, quick: bool = False, workers: int = 2,
               data_seed: int = DEMO_DATA_SEED) -> Setup:
    """The grid on the demo's generated scenes with the demo's stage configs and schedule
    (``tufl demo``; ``quick``: its ``--quick`` data and iterations; ``data_seed``: the seed of
    the generated scenes): the chain is the demo's stages up to the grid's stage. Stage two
    is the authors' protocol (``stage2_authors.yaml``), not the demo's own choice, so that a
    row switches the same part of it as at full scale."""
    from tufl.demo.pipeline import DEFAULT, QUICK, STAGE_NAMES, config_path
    from tufl.demo.scenes import SOURCE_DIR, TARGET_DIR

    if grid.stage is None:
        raise GridError([f"{grid.path}: stage: a grid run with --scale demo names its stage (stage1 or stage2)"])
    settings = QUICK if quick else DEFAULT
    stages = STAGE_NAMES[:STAGE_NAMES.index(grid.stage) + 1]
    source, target = data_dir / SOURCE_DIR, data_dir / TARGET_DIR
    val = {"name": "cityscapes", "root": str(target), "split": "val"}
    common = (f"data.source.root={source}", f"data.target.root={target}", f"data.val={json.dumps(val)}",
              "train.val_every=0", f"data.prepared_dir={data_dir / 'prepared'}", *settings.overrides)
    iters = dict(zip(STAGE_NAMES, settings.iters)) if settings.iters else {}
    overrides = {s: common + ((f"train.iters={iters[s]}",) if s in iters else ()) for s in stages}

    def prepare(cfg: Any) -> None:
        _demo_data(data_dir, settings, workers, cfg, data_seed)

    size = f"{settings.size[0]}x{settings.size[1]}"
    return Setup({s: config_path(s, authors_protocol=True) for s in stages}, grid.stage, overrides, prepare,
                 f"demo scale{' (quick)' if quick else ''}: generated {size} scenes (data seed {data_seed}) in {data_dir}, "
                 f"the demo's configs and schedule with the authors' stage-two protocol")


def _demo_data(data_dir: Path, settings: Any, workers: int, cfg: Any, data_seed: int) -> None:
    """Generate (or reuse) the demo's scenes and write their prepared copies (``tufl prepare-data``)."""
    from tufl.data.prepared import prepare
    from tufl.demo.scenes import ensure_demo_data, load_demo_data_info
    from tufl.train.builders import open_training_datasets

    try:
        found = load_demo_data_info(data_dir)
    except ValueError:  # an unreadable manifest: regenerated below
        found = None
    if found is not None and found.seed != data_seed:
        # Regenerating would change the scenes under the finished runs that trained on them.
        raise GridError([f"--data-seed {data_seed}: {data_dir} holds the scenes of data seed {found.seed}; "
                         f"give another --data-dir (or --out) for another data seed"])
    started = time.time()
    ensure_demo_data(data_dir, seed=data_seed, size=settings.size, n_source=settings.n_source,
                     n_target_train=settings.n_target_train, n_target_val=settings.n_target_val, workers=workers)
    for base in open_training_datasets(cfg).values():
        prepare(base, cfg.data.prepared_dir, workers=max(1, workers), progress=False)
    print(f"[ablate] demo data ready in {data_dir} ({time.time() - started:.0f} s)", flush=True)
