"""``tufl ablate --grid GRID.yaml [--config BASE.yaml] [--seeds 0 1 2] --out DIR [--scale demo]``:
a seeded ablation grid in one command (:mod:`tufl.ablation`).

Every row of the grid (a name and ``--set`` overrides) is trained once per seed in
``DIR/<row>/seed_<k>`` (``python -m tufl train`` subprocesses), after the earlier
stages it starts from (shared between rows that train them alike); then ``DIR/table.md``,
``table.json`` and ``index.html`` give per row the mean ± sample std of mIoU and per-class
IoU, and the paired difference to the baseline row. Rerunning the command skips the
finished runs and resumes the others. See docs/ablation.md.

Exit status: 0 every run finished; 1 a run failed (shown as failed in the table); 2 bad
input (the grid, a row's key or value: nothing is run); 3 stopped by a signal.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tufl.cli.arguments import report_error
from tufl.runtime.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grid", required=True, help="grid file: rows of --set overrides (configs/ablations/*.yaml)")
    parser.add_argument("--config", default=None,
                        help="base config of the grid's stage (default: the grid's config:; with --scale demo: "
                             "the demo's)")
    parser.add_argument("--before", action="append", default=[], metavar="STAGE=CONFIG",
                        help="config of an earlier stage trained first, once per seed, e.g. "
                             "stage1=configs/gta5_cityscapes/bisenet_stage1.yaml (default: the grid's before: "
                             "when its config: is used; none: the chain starts from the config's model.pretrained)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED",
                        help="training seeds, each row trained once per seed (default: 0 1 2)")
    parser.add_argument("--out", required=True, help="output folder: DIR/<row>/seed_<k>, table.md, table.json, "
                                                     "index.html")
    parser.add_argument("--baseline", default=None, metavar="ROW",
                        help="row the others are compared with, seed by seed (default: the grid's baseline:, "
                             "else its first row)")
    parser.add_argument("--scale", choices=("full", "demo"), default="full",
                        help="full: the configs as they are; demo: the demo's generated data, configs and "
                             "schedule (tufl demo), no dataset needed")
    parser.add_argument("--quick", action="store_true",
                        help="with --scale demo: the demo's --quick data and iterations (about a minute per run)")
    parser.add_argument("--data-dir", default=None, help="--scale demo: where the scenes are generated "
                                                         "(default: DIR/data)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="[STAGE:]KEY=VALUE",
                        help="override a value for every row's runs of every stage, or with a STAGE prefix "
                             "(source_only, stage1, stage2) for that stage's runs only, e.g. "
                             "--set data.num_workers=2 (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (default: 1)")
    parser.add_argument("--report", action="store_true",
                        help="also write DIR/report (tufl report of each row's first finished seed: curves, "
                             "per-class IoU), linked from index.html")
    parser.add_argument("--workers", type=int, default=2, help="--scale demo: processes generating the data")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="--scale demo: seed of the generated scenes (default 0); another seed gives other "
                             "scenes, a disjoint split to check a decision on")
    parser.add_argument("--rows", nargs="+", default=[], metavar="ROW",
                        help="train only these rows of the grid (default: all; the baseline row must be one)")


def run(args: argparse.Namespace) -> int:
    from tufl.ablation.job import AblationOptions, run_ablation

    options = AblationOptions(
        grid=Path(args.grid), out=Path(args.out), seeds=tuple(args.seeds), config=args.config,
        before=tuple(args.before), overrides=tuple(args.overrides), scale=args.scale, quick=args.quick,
        data_dir=Path(args.data_dir) if args.data_dir else None, baseline=args.baseline, jobs=args.jobs,
        report=args.report, workers=args.workers, data_seed=args.data_seed, rows=tuple(args.rows))
    try:
        return run_ablation(options)
    except USER_ERRORS as error:
        return report_error(error)
