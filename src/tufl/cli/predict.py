"""``tufl predict --checkpoint CKPT INPUT... [--out DIR]``: colour maps and overlays.

Images give colour, overlay and train-id PNGs; videos give an overlay video and,
with ``--label-maps``, one train-id PNG per frame (optional extra ``video``).
"""

from __future__ import annotations

import argparse
import sys

from tufl.runtime.errors import USER_ERRORS


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
    parser.add_argument("--label-ids", action="store_true",
                        help="also write Cityscapes labelIds PNGs (for the benchmark server)")
    parser.add_argument("--label-maps", action="store_true",
                        help="videos: also write each frame's train ids as OUT/<video>/frame_000000.png, ...")


def run(args: argparse.Namespace) -> int:
    try:
        from tqdm import tqdm

        from tufl.evaluation.options import InferenceOptions
        from tufl.evaluation.predict import collect_inputs, is_video, predict_files
        from tufl.models.build import model_from_checkpoint
        from tufl.runtime.distributed import pick_device

        inputs = collect_inputs(args.inputs, videos=True)
        videos = [path for path in inputs if is_video(path)]
        images = [path for path in inputs if not is_video(path)]
        if videos:
            from tufl.evaluation.video import VideoPrediction, import_av, predict_videos

            import_av()  # a missing extra is reported before the model is loaded
        model, _ = model_from_checkpoint(args.checkpoint)
        device = pick_device(args.device)
        resize = (args.resize[1], args.resize[0]) if args.resize else None  # predict_* take (H, W)
        options = dict(batch_size=args.batch_size, resize=resize,
                       options=InferenceOptions(scales=tuple(args.scales), flip=args.flip, amp=args.amp))
        unreadable: list[str] = []

        def report(path: object, message: str) -> None:
            unreadable.append(message)
            tqdm.write(f"skipped: {message}", file=sys.stderr)  # a line of its own, beside the progress bar

        if images:
            written = predict_files(model, images, args.out, model.num_classes, device, label_ids=args.label_ids,
                                    on_unreadable=report, **options)
            print(f"[tufl] predicted {len(written)} images into {args.out}/ (color/, overlay/, trainid/"
                  f"{', labelIds/' if args.label_ids else ''})")
        if videos:
            def speed(done: VideoPrediction) -> None:
                maps = f" and {done.label_maps}/" if done.label_maps else ""
                print(f"[tufl] {done.source}: {done.frames} frames in {done.seconds:.1f} s "
                      f"({done.frames_per_second:.1f} frames/s) -> {done.overlay}{maps}")

            predict_videos(model, videos, args.out, model.num_classes, device, label_maps=args.label_maps,
                           on_unreadable=report, on_done=speed, **options)
    except (*USER_ERRORS, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if unreadable:
        kind = "inputs" if videos else "images"
        print(f"error: {len(unreadable)} of {len(inputs)} {kind} could not be read (listed above)", file=sys.stderr)
        return 1
    return 0

