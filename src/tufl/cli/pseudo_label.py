"""``tufl pseudo-label --config FILE --checkpoint CKPT [--out DIR]``: write stage-two
pseudo-labels of the target training split to disk."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from tufl.cli.arguments import add_config_arguments, load_run_config
from tufl.runtime.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--checkpoint", required=True, help="stage-one checkpoint that labels the target")
    parser.add_argument("--out", default=None,
                        help="output folder (default: pseudo_labels.dir of the config, else "
                             "<checkpoint folder>/pseudo_labels)")
    parser.add_argument("--device", default=None, help="device (default: experiment.device)")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_run_config(args)
        from tufl.data.registry import open_dataset
        from tufl.models.build import build_model
        from tufl.runtime.distributed import pick_device
        from tufl.objective.pseudo_labels import write_pseudo_labels

        from tufl.models.weights import read_weights
        from tufl.train.builders import build_classes
        from tufl.train.run_state import check_same_classes

        state = read_weights(args.checkpoint)
        check_same_classes(state, args.checkpoint, build_classes(cfg), "the checkpoint that labels", mine="the config")
        model_cfg = replace(cfg.model, pretrained=args.checkpoint, pretrained_format="tufl")
        model = build_model(model_cfg, training=False, weights=state).model
        dataset = open_dataset(cfg.data.target, cfg.model.num_classes, cfg.data.skip_bad_files)
        out = Path(args.out or cfg.pseudo_labels.dir or Path(args.checkpoint).parent / "pseudo_labels")
        device = pick_device(args.device or cfg.experiment.device)
        count = write_pseudo_labels(model, dataset, out, device)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[tufl] wrote pseudo-labels of {count} images to {out}")
    return 0
