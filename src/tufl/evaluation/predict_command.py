"""``tufl predict --checkpoint CKPT INPUT... [--out DIR]``: colour maps and overlays."""

from __future__ import annotations

import argparse
import sys

from tufl.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or globs")
    parser.add_argument("--checkpoint", required=True, help="tufl checkpoint")
    parser.add_argument("--out", default="predictions", help="output folder (default: ./predictions)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default: 4)")
    parser.add_argument("--resize", type=int, nargs=2, metavar=("W", "H"),
                        help="network input size, e.g. 1024 512 for Cityscapes-trained models; outputs keep "
                             "the input size")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0], help="test scales (default: 1.0)")
    parser.add_argument("--flip", action="store_true", help="average with the flipped input")
    parser.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    parser.add_argument("--label-ids", action="store_true",
                        help="also write Cityscapes labelIds PNGs (for the benchmark server)")


def run(args: argparse.Namespace) -> int:
    try:
        from tufl.evaluation.predict import collect_inputs, predict_files
        from tufl.models.build import model_from_checkpoint
        from tufl.train.distributed import pick_device

        files = collect_inputs(args.inputs)
        model, _ = model_from_checkpoint(args.checkpoint)
        resize = (args.resize[1], args.resize[0]) if args.resize else None  # predict_files takes (H, W)
        unreadable: list[str] = []

        def report(path: object, message: str) -> None:
            from tqdm import tqdm

            unreadable.append(message)
            tqdm.write(f"skipped: {message}", file=sys.stderr)  # a line of its own, beside the progress bar

        written = predict_files(model, files, args.out, model.num_classes, pick_device(args.device),
                                batch_size=args.batch_size, scales=tuple(args.scales), flip=args.flip,
                                amp=args.amp, resize=resize, label_ids=args.label_ids, on_unreadable=report)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[tufl] predicted {len(written)} images into {args.out}/ (color/, overlay/, trainid/"
          f"{', labelIds/' if args.label_ids else ''})")
    if unreadable:
        print(f"error: {len(unreadable)} of {len(files)} images could not be read (listed above)", file=sys.stderr)
        return 1
    return 0
