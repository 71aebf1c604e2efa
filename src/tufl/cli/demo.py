"""``tufl demo [--out DIR] [--quick] [--set [STAGE:]KEY=VALUE]``: the built-in
synthetic -> realistic benchmark end to end (:mod:`tufl.demo.pipeline`).

``tufl demo --own-data-example DIR`` instead writes an example of your own data (a
labelled simulator folder in its own class scheme, dashcam frames, a few labelled
frames, a video) for the walk-through of docs/own-data.md, and stops."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tufl.demo.pipeline import DEFAULT, QUICK, STAGE_NAMES, run_demo, stage_overrides
from tufl.runtime.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output", help="output folder (default: ./demo_output)")
    parser.add_argument("--data-dir", default=None,
                        help="where the generated scenes are cached (default: <out>/data)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of training (default: 0)")
    parser.add_argument("--quick", action="store_true", help="tiny data and schedule (about a minute; for tests)")
    parser.add_argument("--workers", type=int, default=2, help="processes generating the data (default: 2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="[STAGE:]KEY=VALUE",
                        help="override a value of the demo configs for all three stages, or with a STAGE prefix "
                        "(source_only, stage1, stage2) for that stage only, e.g. stage2:pseudo_labels.source=ema")
    parser.add_argument("--own-data-example", metavar="DIR", default=None,
                        help="write an example of your own data into DIR (the layout of docs/own-data.md and "
                             "configs/own_data/bisenet_*.yaml: data/own_example) and stop")


def run(args: argparse.Namespace) -> int:
    if args.own_data_example:
        return write_example(Path(args.own_data_example), args.seed, args.workers)
    out = Path(args.out)
    data_dir = Path(args.data_dir) if args.data_dir else out / "data"
    settings = QUICK if args.quick else DEFAULT
    try:
        for stage in STAGE_NAMES:  # a bad stage prefix is reported before anything runs
            stage_overrides(args.overrides, stage)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run_demo(out, data_dir, args.seed, settings, args.workers, args.overrides)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def write_example(root: Path, seed: int, workers: int) -> int:
    """``--own-data-example``: write the example and say what is where."""
    from tufl.demo.own_data_example import write_own_data_example

    if root.exists() and any(root.iterdir()):
        print(f"error: {root} is not empty; give a new folder for the example", file=sys.stderr)
        return 2
    example = write_own_data_example(root, seed=seed, workers=workers)
    print(f"[tufl] wrote an example of your own data in {root}:\n"
          f"  simulator/images, simulator/labels  {example.simulator_images} labelled simulator images "
          "(raw values of configs/own_data/classes/simulator_6_classes.yaml)\n"
          f"  dashcam/frames                      {example.frames} unlabelled dashcam frames (JPEG)\n"
          f"  dashcam/val/images, dashcam/val/labels  {example.labelled_frames} labelled frames\n"
          + ("  dashcam/drive.mp4                   the labelled frames as a video\n" if example.video else
             "  (no video: install the video extra, pip install -e '.[video]', for dashcam/drive.mp4)\n")
          + "Next: docs/own-data.md, step 1")
    return 0
