"""``tufl pseudo-label --config FILE --checkpoint CKPT [--out DIR]``: write stage-two
pseudo-labels of the target training split to disk.

The folder is locked while it is written and ends with a manifest (where the labels
come from, every file's size and CRC-32) that stage two checks. Exit status: 0 done,
1 an output could not be written (full disk, permissions), 2 bad input or a folder
in use by another process.
"""

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
                             "<checkpoint folder>/pseudo_labels); pseudo-labels of another checkpoint or "
                             "config in it are replaced")
    parser.add_argument("--device", default=None, help="device (default: experiment.device)")


def run(args: argparse.Namespace) -> int:
    try:
        out, count, sha = _write(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output that cannot be written (full disk, permissions): the message names it
        print(f"error: {exc.strerror if exc.strerror and exc.filename is None else exc}", file=sys.stderr)
        return 1
    print(f"[tufl] wrote pseudo-labels of {count} images to {out} (model sha256 {sha[:12]}..., "
          f"manifest.json written last)")
    return 0


def _write(args: argparse.Namespace) -> tuple[Path, int, str]:
    """Label the target split with the checkpoint; returns the folder, the count and the model hash."""
    from tufl.data.registry import open_dataset
    from tufl.models.build import build_model
    from tufl.models.weights import read_weights
    from tufl.objective.pseudo_label_files import provenance
    from tufl.objective.pseudo_labels import write_pseudo_labels
    from tufl.runtime.distributed import pick_device
    from tufl.train.builders import build_classes
    from tufl.train.run_state import check_same_classes

    cfg = load_run_config(args)
    state = read_weights(args.checkpoint)
    check_same_classes(state, args.checkpoint, build_classes(cfg), "the checkpoint that labels", mine="the config")
    model_cfg = replace(cfg.model, pretrained=args.checkpoint, pretrained_format="tufl")
    model = build_model(model_cfg, training=False, weights=state).model
    dataset = open_dataset(cfg.data.target, cfg.model.num_classes, cfg.data.skip_bad_files)
    out = Path(args.out or cfg.pseudo_labels.dir or Path(args.checkpoint).parent / "pseudo_labels")
    device = pick_device(args.device or cfg.experiment.device)
    source = provenance(args.checkpoint, model, model_cfg, cfg.data.target, dataset.resize)
    count = write_pseudo_labels(model, dataset, out, device, source=source)
    return out, count, source.model_sha256
