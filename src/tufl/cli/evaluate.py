"""``tufl evaluate --checkpoint CKPT [--config FILE] [--split S] [inference options]``
and ``tufl evaluate --aggregate RUN_DIR [RUN_DIR ...] [--evaluate]``.

Without ``--config`` the run's own resolved config, stored in the checkpoint, says
where the validation data are. Inference options default to the config's ``eval``
section. The per-class table is printed; CSV and JSON land next to the checkpoint.

``--aggregate`` builds the table of ``tufl train --seeds`` from existing run folders:
each run's final validation (the last ``val`` record of its metrics.jsonl; with
``--evaluate``, an evaluation of its ``checkpoint_last.pt`` as above), then the mean ±
sample standard deviation (n - 1) of the mIoU and of each class's IoU, printed and
written as ``seeds.json`` and ``seeds.md`` to ``--out`` (default: the runs' common
parent folder). See :mod:`tufl.evaluation.seeds`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from tufl.cli.arguments import add_config_arguments
from tufl.runtime.errors import USER_ERRORS, ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, required=False)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="tufl checkpoint (checkpoint_last.pt / checkpoint_best.pt)")
    what.add_argument("--aggregate", nargs="+", metavar="RUN_DIR",
                      help="instead of one checkpoint: the final validation of each run folder (e.g. the "
                           "seed_* folders of tufl train --seeds) and their mean ± sample standard deviation "
                           "(n - 1), written as seeds.json and seeds.md to --out (default: the runs' common "
                           "parent folder)")
    parser.add_argument("--evaluate", action="store_true",
                        help="with --aggregate: evaluate each run's checkpoint_last.pt (with the options below) "
                             "instead of reading the last val record of its metrics.jsonl")
    parser.add_argument("--split", default=None, help="split of data.val to evaluate (default: the config's)")
    parser.add_argument("--device", default=None, help="device (default: experiment.device)")
    parser.add_argument("--out", default=None, help="folder of the CSV/JSON report (default: next to the checkpoint; "
                                                    "--aggregate: the runs' common parent folder)")
    group = parser.add_argument_group("inference (defaults: the config's eval section)")
    group.add_argument("--scales", type=float, nargs="+", default=None, help="test scales, e.g. 0.5 0.75 1 1.25 1.5 1.75")
    group.add_argument("--flip", action="store_true", default=None, help="average with the flipped input")
    group.add_argument("--window", type=int, nargs=2, metavar=("H", "W"), help="sliding-window size")
    group.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="sliding-window stride")
    group.add_argument("--no-amp", dest="amp", action="store_false", default=None, help="no mixed precision")
    group.add_argument("--save-dir", help="also write the predictions (train ids and colours) here")
    parser.add_argument("--skip-bad-files", action="store_true", default=None,
                        help="leave unreadable samples out (each named, counted in the report) instead of "
                             "stopping at the first one (default: eval.skip_bad_files, false)")


def evaluation_part(stored: dict) -> dict:
    """What evaluation reads of a checkpoint's stored config: the run's identity, model,
    validation data, the loss's name and the eval section. Training-only sections (losses'
    options, mixing, augmentation, optimiser) are left out, so checkpoints written before
    those options changed still evaluate."""
    part = {key: stored[key] for key in ("experiment", "model", "eval") if key in stored}
    data = stored.get("data") or {}
    part["data"] = {key: data[key] for key in ("val",) if key in data}
    loss = stored.get("loss") or {}
    part["loss"] = {key: loss[key] for key in ("unsupervised", "lambda_u") if key in loss}
    return part


def run_config(args: argparse.Namespace, state: dict):  # noqa: ANN201 - returns Config
    """The config named by --config, else the evaluation part of the one stored in the checkpoint."""
    from tufl.config import experiment_from_dict, load_experiment
    from tufl.runtime.typed_config import apply_overrides

    if args.config:
        return load_experiment(args.config, args.overrides)
    if "config" not in state:
        raise FileNotFoundError(f"{args.checkpoint} stores no config; pass --config")
    origins: dict[str, str] = {}
    tree = apply_overrides(evaluation_part(dict(state["config"])), args.overrides, origins)
    return experiment_from_dict(tree, origins, default_origin=f"{args.checkpoint} (stored config)")


def evaluate_checkpoint(args: argparse.Namespace, checkpoint: str):  # noqa: ANN201
    """Evaluate ``checkpoint`` as the command's options say; returns (result, config, state,
    dataset, checkpoint kind)."""
    from tufl.data.registry import open_dataset
    from tufl.data.loader import eval_loader
    from tufl.data.samples import EvalSamples
    from tufl.evaluation.evaluate import evaluate
    from tufl.models.build import model_from_checkpoint
    from tufl.runtime.checkpoint_files import BEST_NAME
    from tufl.runtime.distributed import pick_device
    from tufl.train.builders import build_classes
    from tufl.train.run_state import check_same_classes

    model, state = model_from_checkpoint(checkpoint)
    cfg = run_config(argparse.Namespace(**{**vars(args), "checkpoint": checkpoint}), state)
    origin = args.config or f"{checkpoint} (stored config)"
    if cfg.data.val is None:
        raise ConfigError([f"{origin}: data.val: no validation split, nothing to evaluate on"])
    if args.split:
        cfg = replace(cfg, data=replace(cfg.data, val=replace(cfg.data.val, split=args.split)))
    if cfg.model.num_classes != model.num_classes:
        raise ConfigError([f"{origin}: model.num_classes: {cfg.model.num_classes}, but {checkpoint} "
                           f"was trained with {model.num_classes} classes"])
    classes = build_classes(cfg)
    check_same_classes(state, checkpoint, classes, "the checkpoint to evaluate", mine="the config")
    skip_bad = cfg.eval.skip_bad_files if args.skip_bad_files is None else True
    dataset = EvalSamples(open_dataset(cfg.data.val, model.num_classes, False, cfg.data.max_image_pixels),
                          skip_bad=skip_bad)
    for path, problem in dataset.skipped:
        print(f"skipped: {path}: {problem}", file=sys.stderr)
    options = inference_options(args, cfg.eval)
    device = pick_device(args.device or cfg.experiment.device)
    loader = eval_loader(dataset, options.batch_size, options.num_workers)
    result = evaluate(model, loader, model.num_classes, device, options, save_dir=args.save_dir, classes=classes)
    kind = "best" if Path(checkpoint).name == BEST_NAME else "last"
    return result, cfg, state, dataset, kind


def split_name(ds: Any) -> str | None:
    """The split of an official dataset; None for your own data (folder, images), which has none."""
    from tufl.data.registry import OWN_DATA

    return None if ds.name in OWN_DATA else ds.split


def inference_options(args: argparse.Namespace, options: Any) -> Any:
    """The config's ``eval`` section (an :class:`~tufl.evaluation.options.EvalConfig`) with the
    command's inference options applied; a window without a stride slides by the window."""
    window = tuple(args.window) if args.window else options.window
    stride = tuple(args.stride) if args.stride else (options.stride if not args.window else window)
    return replace(options, scales=tuple(args.scales or options.scales), flip=options.flip if args.flip is None else True,
                   window=window, stride=stride, amp=options.amp if args.amp is None else False)


def aggregate_runs(args: argparse.Namespace) -> int:
    """``--aggregate``: the seed table of existing run folders."""
    from tufl.evaluation.seed_runs import common_folder, read_run_result, run_labels, run_seed, write_seed_table
    from tufl.evaluation.seeds import RunResult, aggregate
    from tufl.runtime.checkpoint_files import LAST_NAME

    if args.save_dir:
        raise ConfigError(["--save-dir goes with --checkpoint (one checkpoint's predictions), not --aggregate"])
    try:
        labels = run_labels(args.aggregate)
    except ValueError as error:
        raise ConfigError([f"--aggregate: {error}"]) from error
    results = []
    for run_dir, label in zip(args.aggregate, labels):
        if not args.evaluate:
            results.append(read_run_result(run_dir, label))
            continue
        result, _, state, _, _ = evaluate_checkpoint(args, str(Path(run_dir) / LAST_NAME))
        print(f"[tufl] {label}: mIoU {100 * result.miou:.2f} (iteration {state.get('iteration')})")
        results.append(RunResult(label=label, seed=run_seed(run_dir), iteration=state.get("iteration"),
                                 miou=result.miou, iou=dict(zip(result.class_names, result.iou)),
                                 run_dir=str(run_dir)))
    try:
        table = aggregate(results)
    except ValueError as error:  # runs of different class sets
        raise ConfigError([f"--aggregate: {error}"]) from error
    folder = Path(args.out) if args.out else common_folder(args.aggregate)
    source = "evaluated checkpoint_last.pt" if args.evaluate else "last val records"
    json_path, md_path, markdown = write_seed_table(table, folder, f"{len(results)} run{'s' if len(results) != 1 else ''} in {folder} ({source})")
    print(markdown, end="")
    print(f"[tufl] wrote {json_path} and {md_path}")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        if args.aggregate:
            return aggregate_runs(args)
        if args.evaluate:
            raise ConfigError(["--evaluate goes with --aggregate; a single --checkpoint is always evaluated"])
        from tufl.evaluation.evaluate import write_eval_report
        from tufl.evaluation.report import format_table

        result, cfg, state, dataset, kind = evaluate_checkpoint(args, args.checkpoint)
        title = (f"{Path(args.checkpoint)} ({kind} checkpoint, iteration {state.get('iteration')}) on "
                 f"{cfg.data.val.title}, {len(dataset)} images"
                 + (f" ({len(dataset.skipped)} unreadable left out)" if dataset.skipped else ""))
        print(format_table(result, title))
        csv_path, json_path = write_eval_report(
            result, args.out, args.checkpoint, kind,
            {"iteration": state.get("iteration"), "dataset": cfg.data.val.name, "split": split_name(cfg.data.val),
             "root": cfg.data.val.root, "unreadable_left_out": len(dataset.skipped)},
        )
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[tufl] wrote {csv_path} and {json_path}")
    return 0
