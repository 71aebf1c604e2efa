"""``tufl export --checkpoint CKPT --onnx OUT.onnx``: the inference network as ONNX.

Input: RGB ``uint8``/float images ``[B, 3, H, W]`` in [0, 255] (normalisation is
inside the graph); output: class logits ``[B, C, H, W]``. The model's class set (names,
colours) is in the file's metadata (``tufl.classes``, JSON). Needs ``tufl[onnx]``.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from tufl.runtime.errors import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="tufl checkpoint")
    parser.add_argument("--onnx", required=True, metavar="OUT", help="output .onnx file")
    parser.add_argument("--height", type=int, default=512, help="example input height (default: 512)")
    parser.add_argument("--width", type=int, default=1024, help="example input width (default: 1024)")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--static", action="store_true", help="fixed batch and input size")
    parser.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the onnxruntime comparison with PyTorch")


def model_metadata(state: dict, checkpoint: str, convention: str) -> dict[str, str]:
    """What an exported model carries beside its graph: the class set (names, colours; JSON) and
    the input convention of the checkpoint."""
    from tufl.data.class_set import checkpoint_classes

    classes = checkpoint_classes(state, checkpoint)
    out = {"tufl.input": "RGB images [B, 3, H, W] in [0, 255], normalised inside the graph",
           "tufl.input_convention": convention}
    if classes is not None:
        out["tufl.classes"] = json.dumps(classes.to_record())
    return out


def run(args: argparse.Namespace) -> int:
    try:
        from tufl.evaluation.export import export_onnx, verify_onnx
        from tufl.models.build import model_from_checkpoint

        model, state = model_from_checkpoint(args.checkpoint)
        model.eval()
        path = export_onnx(model, args.onnx, args.height, args.width, opset=args.opset,
                           dynamic_batch=not args.static, dynamic_size=not args.static, exporter=args.exporter,
                           metadata=model_metadata(state, args.checkpoint, model.convention.name))
        print(f"[tufl] exported {path}")
        if args.verify:
            sample = torch.randint(0, 256, (1, 3, args.height, args.width), dtype=torch.uint8).float()
            diff = verify_onnx(model, path, sample)
            print(f"[tufl] onnxruntime vs PyTorch: max |logit difference| = {diff:.2e}")
    except (*USER_ERRORS, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
