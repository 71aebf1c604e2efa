"""``tufl report RUN_DIR [RUN_DIR ...] --out DIR``: an HTML report of training runs.

Per run folder: the loss, threshold and validation-mIoU curves of its ``metrics.jsonl``,
its per-class IoU (its last ``val`` record) beside the other runs', and sample predictions
of its checkpoint on its validation split (with ground truth) or, without one, on its
target images. See :mod:`tufl.report.build`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tufl.cli.arguments import report_error
from tufl.runtime.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run folders (experiment.output_dir of tufl train): stages or seeds to compare")
    parser.add_argument("--out", required=True, help="folder of the report (index.html, PNG charts, summary.json)")
    parser.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                        help="names of the runs on the page, one per RUN_DIR (default: the folder names)")
    parser.add_argument("--samples", type=int, default=6,
                        help="sample images predicted by every run, evenly spread over the split (default: 6; "
                             "0: none)")
    parser.add_argument("--checkpoint", choices=("last", "best"), default="last",
                        help="checkpoint each run predicts with: checkpoint_last.pt or checkpoint_best.pt "
                             "(default: last)")
    parser.add_argument("--device", default="auto", help="device of the predictions: auto, cpu, cuda, ... "
                                                         "(default: auto)")
    parser.add_argument("--title", default=None, help="page title (default: tufl report: <run names>)")


def run(args: argparse.Namespace) -> int:
    from tufl.report.build import ReportOptions, report_runs

    options = ReportOptions(labels=tuple(args.labels or ()), samples=args.samples, checkpoint=args.checkpoint,
                            device=args.device, title=args.title)
    try:
        page = report_runs(args.runs, Path(args.out), options)
    except (*USER_ERRORS, ValueError) as error:
        return report_error(" ".join(str(error).split()))
    print(f"[tufl] report: {page}")
    return 0
