"""``tufl predict --checkpoint CKPT INPUT... [--out DIR]``: colour maps and overlays.

Images give colour, overlay and train-id PNGs; videos give an overlay video and,
with ``--label-maps``, one train-id PNG per frame (optional extra ``video``). The
colours are those of the model's classes, stored in its checkpoint; ``OUT/legend.png``
shows which colour is which class. An input that cannot be read, or a video that
cannot be read to its end (unless ``--allow-partial``), is named on a line of its own
and makes the exit status 1; its outputs are not written. An output that cannot be
written (a full disk) ends the command with one line naming it and status 1.

Inputs are never read from the output folder (``--out`` may be inside an input
folder); a symbolic link that loops is an error naming it. The output folder is locked
while it is written, and temporary files a killed earlier run left in it are removed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tufl.runtime.errors import USER_ERRORS
from tufl.runtime.folder_lock import FolderLock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image or video files, folders (recursive) or globs")
    parser.add_argument("--checkpoint", required=True, help="tufl checkpoint")
    parser.add_argument("--out", default="predictions", help="output folder (default: ./predictions)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="images or video frames per forward pass (default: 4)")
    parser.add_argument("--resize", type=int, nargs=2, metavar=("W", "H"),
                        help="network input size, e.g. 1024 512 for Cityscapes-trained models; outputs keep "
                             "the input size")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0], help="test scales (default: 1.0)")
    parser.add_argument("--flip", action="store_true", help="average with the flipped input")
    parser.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    parser.add_argument("--palette", choices=("model", "cityscapes"), default="model",
                        help="colours of the classes: model (default), those stored with the model (its class "
                             "file's); cityscapes, the Cityscapes colour of each class name. The same for the "
                             "Cityscapes class sets")
    parser.add_argument("--label-ids", action="store_true",
                        help="also write Cityscapes labelIds PNGs (for the benchmark server; models of the "
                             "19/16/13 Cityscapes classes only)")
    parser.add_argument("--label-maps", action="store_true",
                        help="videos: also write each frame's train ids as OUT/<video>/frame_000000.png, ...")
    parser.add_argument("--max-image-pixels", type=int, default=None, metavar="N",
                        help="images with more pixels are skipped, named, before they are decoded (default: "
                             "64000000, as data.max_image_pixels)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="videos that end early or have undecodable frames: keep the frames that could be "
                             "read and warn (default: such a video fails and writes nothing)")


def run(args: argparse.Namespace) -> int:
    try:
        inputs = _inputs(args)
        failed = _predict(args, inputs)
    except (*USER_ERRORS, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output that cannot be written (full disk, permissions): the message names it
        print(f"error: {exc.strerror if exc.strerror and exc.filename is None else exc}", file=sys.stderr)
        return 1
    if failed:
        from tufl.evaluation.predict import is_video
        from tufl.evaluation.video import INCOMPLETE

        kind = "inputs" if any(is_video(path) for path in inputs) else "images"
        hint = " (--allow-partial keeps what could be read of a video)" if any(
            INCOMPLETE in message for message in failed) else ""
        print(f"error: {len(failed)} of {len(inputs)} {kind} could not be read (listed above){hint}",
              file=sys.stderr)
        return 1
    return 0


def _inputs(args: argparse.Namespace) -> list[Path]:
    """The input files, never those under the output folder (said once when it is inside an input)."""
    from tufl.evaluation.predict import collect_inputs, is_video
    from tufl.evaluation.predict_inputs import output_inside_inputs

    if args.max_image_pixels is not None and args.max_image_pixels < 1:
        raise ValueError(f"--max-image-pixels must be positive, got {args.max_image_pixels}")
    inside = output_inside_inputs(args.inputs, args.out)
    if inside is not None:
        print(f"[tufl] note: the output folder {args.out} is inside the input {inside}; its files are not "
              "read as inputs")
    inputs = collect_inputs(args.inputs, videos=True, exclude=args.out)
    if any(is_video(path) for path in inputs):
        from tufl.evaluation.video import import_av

        import_av()  # a missing extra is reported before the model is loaded
    return inputs


def _remove_leftovers(out: str) -> None:
    """Remove the temporary files an interrupted earlier run left in the output folder."""
    from tufl.objective.temporary_files import remove_temporary_leftovers

    removed = remove_temporary_leftovers(out)
    if removed:
        print(f"[tufl] removed {len(removed)} temporary file(s) of an interrupted run from {out}")


def _predict(args: argparse.Namespace, inputs: list[Path]) -> list[str]:
    """Predict the images, then the videos; write the legend. Returns the messages of the
    inputs that could not be read."""
    from tufl.evaluation.options import InferenceOptions
    from tufl.evaluation.predict import check_label_ids, model_classes
    from tufl.evaluation.writers import class_palette, save_legend
    from tufl.models.build import model_from_checkpoint
    from tufl.runtime.distributed import pick_device
    from tufl.runtime.progress import say

    model, state = model_from_checkpoint(args.checkpoint)
    classes = model_classes(state, model.num_classes, args.checkpoint)
    try:
        palette = class_palette(classes, args.palette)
        if args.label_ids:
            check_label_ids(classes)
    except ValueError as error:
        raise ValueError(f"{args.checkpoint}: {error}") from None
    resize = (args.resize[1], args.resize[0]) if args.resize else None  # predict_* take (H, W)
    options: dict[str, Any] = dict(
        batch_size=args.batch_size, resize=resize, classes=classes, palette=args.palette,
        options=InferenceOptions(scales=tuple(args.scales), flip=args.flip, amp=args.amp))
    device = pick_device(args.device)
    failed: list[str] = []

    def report(path: object, message: str) -> None:
        failed.append(message)
        say(f"skipped: {message}", file=sys.stderr)  # a line of its own, beside the progress bar

    with FolderLock(args.out, "predictions"):  # its temporary files are then ours to remove
        _remove_leftovers(args.out)
        if _predict_all(args, model, inputs, device, report, options):
            legend = save_legend(Path(args.out) / "legend.png", classes.names, palette)
            print(f"[tufl] class colours: {legend}")
    return failed


def _predict_all(args: argparse.Namespace, model: Any, inputs: list[Path], device: Any, report: Any,
                 options: dict[str, Any]) -> int:
    """Predict the images, then the videos; returns how many inputs were written."""
    from tufl.evaluation.predict import is_video, predict_files

    images = [path for path in inputs if not is_video(path)]
    videos = [path for path in inputs if is_video(path)]
    written = 0
    if images:
        done = predict_files(model, images, args.out, model.num_classes, device, label_ids=args.label_ids,
                             on_unreadable=report, max_pixels=args.max_image_pixels, **options)
        written += len(done)
        print(f"[tufl] predicted {len(done)} images into {args.out}/ (color/, overlay/, trainid/"
              f"{', labelIds/' if args.label_ids else ''})")
    if videos:
        written += _predict_videos(args, model, videos, device, report, options)
    return written


def _predict_videos(args: argparse.Namespace, model: Any, videos: list[Path], device: Any,
                    report: Any, options: dict[str, Any]) -> int:
    """Predict the videos, printing each one's speed or what is missing of it; returns how many were written."""
    from tufl.evaluation.video import VideoPrediction, predict_videos
    from tufl.runtime.progress import say

    def speed(done: VideoPrediction) -> None:
        if done.warning:
            say(f"warning: {done.warning} (kept: --allow-partial)", file=sys.stderr)
        maps = f" and {done.label_maps}/" if done.label_maps else ""
        print(f"[tufl] {done.source}: {done.frames} frames in {done.seconds:.1f} s "
              f"({done.frames_per_second:.1f} frames/s) -> {done.overlay}{maps}")

    done = predict_videos(model, videos, args.out, model.num_classes, device, label_maps=args.label_maps,
                          allow_partial=args.allow_partial, on_unreadable=report, on_done=speed, **options)
    return len(done)
