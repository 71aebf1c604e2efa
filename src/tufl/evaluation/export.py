"""ONNX export of the inference network, and a check against onnxruntime.

The exported graph takes float32 RGB images ``[B, 3, H, W]`` in ``[0, 255]`` (the
normalisation lives in the Segmentor, so it is part of the graph) and returns the
main logits ``[B, C, H, W]``. Batch, height and width are dynamic by default.

The ONNX packages are the optional extra ``tufl[onnx]`` and are imported only here.
Two exporters are offered:

* ``"dynamo"`` (default): ``torch.export`` with symbolic shapes. A size that the
  network cannot keep dynamic is either kept dynamic correctly or fails the
  export, so a graph never silently computes with a size baked in.
* ``"torchscript"``: the tracing exporter (``dynamo=False``), much faster to run
  but deprecated upstream, and tracing may bake sizes computed in Python (e.g. a
  pooling kernel taken from a feature-map size) into the graph. Check such models
  with :func:`verify_onnx` at the sizes you will use.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from tufl.runtime.atomic import atomic_path
from tufl.evaluation.inference import eval_mode, forward_logits, model_device

Exporter = Literal["dynamo", "torchscript"]
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


class MainLogits(nn.Module):
    """Exposes the main logits of a Segmentor-like model as a plain tensor output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images).main


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    height: int,
    width: int,
    opset: int = 18,
    dynamic_batch: bool = True,
    dynamic_size: bool = True,
    exporter: Exporter = "dynamo",
    metadata: dict[str, str] | None = None,
) -> Path:
    """Export ``model`` in eval mode to ``path`` (one self-contained ``.onnx`` file).

    ``height`` and ``width`` are the example input size (the fixed size when
    ``dynamic_size`` is off). ``metadata`` goes into the model's ``metadata_props`` (the
    class set, the input convention). The model's mode is restored afterwards.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if exporter not in ("dynamo", "torchscript"):
        raise ValueError(f"exporter must be 'dynamo' or 'torchscript', got {exporter!r}")
    _require("onnx", *(("onnxscript",) if exporter == "dynamo" else ()))
    example_batch = 2 if dynamic_batch else 1  # torch.export specialises sizes 0 and 1
    generator = torch.Generator().manual_seed(0)
    example = (torch.rand(example_batch, 3, height, width, generator=generator) * 255).to(model_device(model))
    target = Path(path)
    with eval_mode(model):
        wrapper = MainLogits(model).eval()
        with atomic_path(target) as tmp, torch.no_grad():
            if exporter == "dynamo":
                _export_dynamo(wrapper, example, tmp, opset, dynamic_batch, dynamic_size)
            else:
                _export_torchscript(wrapper, example, tmp, opset, dynamic_batch, dynamic_size)
            if metadata:
                _add_metadata(tmp, metadata)
    return target


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    graph = onnx.load(os.fspath(path))
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, os.fspath(path))


def verify_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    sample: Tensor,
    providers: list[str] | None = None,
) -> float:
    """Max absolute difference between the model's and onnxruntime's main logits on ``sample``.

    ``sample``: ``[B, 3, H, W]`` RGB in ``[0, 255]``. onnxruntime runs on the CPU
    unless ``providers`` says otherwise; the model runs in eval mode on its device.
    """
    ort = _require("onnxruntime")[0]
    if sample.dim() != 4 or sample.shape[1] != 3:
        raise ValueError(f"expected a sample of shape [B, 3, H, W], got {tuple(sample.shape)}")
    images = sample.detach().float()
    try:
        session = ort.InferenceSession(os.fspath(path), providers=providers or ["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise ValueError(f"{path}: onnxruntime cannot load the model ({error})") from error
    (onnx_logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.cpu().numpy()})
    with eval_mode(model), torch.no_grad():
        reference = forward_logits(model, images.to(model_device(model))).cpu().numpy()
    if onnx_logits.shape != reference.shape:
        raise ValueError(f"{path}: ONNX output shape {onnx_logits.shape} differs from the model's {reference.shape}")
    return float(np.abs(onnx_logits.astype(np.float64) - reference.astype(np.float64)).max())


def _export_dynamo(
    wrapper: nn.Module, example: Tensor, path: Path, opset: int, dynamic_batch: bool, dynamic_size: bool
) -> None:
    dims: dict[int, Any] = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim.DYNAMIC
    if dynamic_size:
        dims[2] = dims[3] = torch.export.Dim.DYNAMIC
    torch.onnx.export(
        wrapper,
        (example,),
        os.fspath(path),
        dynamo=True,
        external_data=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={INPUT_NAME: dims} if dims else None,
        opset_version=opset,
        verbose=False,
    )


def _export_torchscript(
    wrapper: nn.Module, example: Tensor, path: Path, opset: int, dynamic_batch: bool, dynamic_size: bool
) -> None:
    axes: dict[int, str] = {}
    if dynamic_batch:
        axes[0] = "batch"
    if dynamic_size:
        axes.update({2: "height", 3: "width"})
    torch.onnx.export(
        wrapper,
        (example,),
        os.fspath(path),
        dynamo=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes} if axes else None,
        opset_version=opset,
    )


def _require(*modules: str) -> list[Any]:
    """Import optional ONNX modules, with an install hint when any is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"ONNX support needs the optional packages {', '.join(missing)}: pip install 'tufl[onnx]'"
        )
    return [importlib.import_module(m) for m in modules]
