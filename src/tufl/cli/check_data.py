"""``tufl check-data --dataset NAME --root DIR [--split S]`` or ``--config FILE``: verify a
dataset on disk before training on it (the checks: :mod:`tufl.data.check`).

Exit status: 0 no errors (warnings allowed); 1 errors found; 2 bad input.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from tufl.cli.arguments import report_error
from tufl.data.check import check_dataset, format_report
from tufl.data.io import DEFAULT_MAX_IMAGE_PIXELS
from tufl.data.registry import DATASETS, OWN_DATA


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=DATASETS.names(), help="dataset name (or use --config)")
    parser.add_argument("--root", help="dataset root folder")
    parser.add_argument(
        "--split", default=None,
        help="split (default: the dataset's labelled split: train; val for acdc, dark_zurich, bdd100k and "
             "mapillary; Cross-City needs <City>/train or <City>/test, e.g. Rome/test; ACDC takes "
             "<condition>/<split> too, e.g. night/val)",
    )
    parser.add_argument(
        "--num-classes", type=int, default=None, choices=(19, 16, 13),
        help="class set (default: the dataset's: 19; SYNTHIA 16; Cross-City 13)",
    )
    parser.add_argument("--list-file", default=None, help="text file of sample names to check "
                        "(folder/images: lines 'image [label]' relative to --root)")
    own = parser.add_argument_group("your own data (folder, images; see docs/own-data.md)")
    own.add_argument("--images", nargs="+", default=(), metavar="PATH",
                     help="image folders or globs relative to --root (default: the root)")
    own.add_argument("--labels", default=None, help="folder: label folder relative to --root")
    own.add_argument("--label-rule", default="stem", help="folder: 'stem' or 'OLD->NEW' (default: stem)")
    own.add_argument("--classes", default=None,
                     help="class definition file (folder: raw values -> classes; official datasets: from_source)")
    parser.add_argument("--config", default=None,
                        help="check the data sections of this training config instead of --dataset/--root")
    parser.add_argument("--section", nargs="+", choices=("source", "target", "val"), default=None,
                        help="with --config: the sections to check (default: all)")
    parser.add_argument(
        "--max-image-pixels", type=int, default=None, metavar="N",
        help=f"images and labels with more pixels are refused from their header, before decoding (default: "
             f"{DEFAULT_MAX_IMAGE_PIXELS}; with --config, its data.max_image_pixels)",
    )
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1),
        help="decoding processes (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """Run check-data from parsed arguments, print the report; 0 when OK, 1 otherwise."""
    if args.max_image_pixels is not None and args.max_image_pixels < 1:
        return report_error("--max-image-pixels must be >= 1")
    if args.config:
        return _run_config_sections(args)
    if not args.dataset or not args.root:
        return report_error("give --dataset and --root, or --config")
    dataset = DATASETS.get(args.dataset)
    split = args.split or dataset.check_split
    if split is None:
        return report_error(f"--split is required for {args.dataset} (e.g. {dataset.default_split})")
    own_data = None
    if args.dataset in OWN_DATA:
        own_data = {"images": tuple(args.images), "label_rule": args.label_rule}
        if args.dataset == "folder":
            own_data["labels"] = args.labels
    report = check_dataset(
        args.dataset, args.root, split, args.num_classes or dataset.default_num_classes, list_file=args.list_file,
        workers=args.workers, progress=True, classes=args.classes, own_data=own_data,
        max_image_pixels=args.max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS,
    )
    print(format_report(report))
    return 0 if report.ok else 1


def _run_config_sections(args: argparse.Namespace) -> int:
    """check-data over the data sections of a training config (``--config``)."""
    from tufl.config import load_experiment
    from tufl.runtime.errors import ConfigError

    try:
        cfg = load_experiment(args.config)
    except (ConfigError, OSError) as exc:
        return report_error(exc)
    status = 0
    max_pixels = args.max_image_pixels or cfg.data.max_image_pixels
    for section in args.section or ("source", "target", "val"):
        ds = getattr(cfg.data, section)
        if ds is None:
            continue
        report = check_dataset(ds.name, ds.root, ds.split, cfg.model.num_classes, list_file=ds.list_file,
                               workers=args.workers, progress=True, classes=ds.classes, own_data=_own_data(ds),
                               max_image_pixels=max_pixels)
        print(f"[data.{section}]")
        print(format_report(report))
        status = status if report.ok else 1
    return status


def _own_data(ds: Any) -> dict[str, Any] | None:
    """The folder/images options of a dataset section (None for an official layout)."""
    if ds.name not in OWN_DATA:
        return None
    own: dict[str, Any] = {"images": tuple(ds.images), "label_rule": ds.label_rule}
    if ds.name == "folder":
        own["labels"] = ds.labels
    return own
