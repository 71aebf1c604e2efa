"""The evaluation loop over a labelled loader, and the report next to the checkpoint."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from tufl.data.class_set import ModelClasses
from tufl.evaluation.inference import eval_mode, predict_probs
from tufl.evaluation.metrics import ConfusionMatrix, EvalResult
from tufl.evaluation.options import InferenceOptions
from tufl.evaluation.report import Scalar, write_csv, write_json
from tufl.evaluation.writers import save_color, save_train_ids
from tufl.runtime.progress import progress_bar

CheckpointKind = Literal["last", "best"]


def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    num_classes: int,
    device: torch.device | str,
    options: InferenceOptions = InferenceOptions(),
    progress: bool = True,
    save_dir: str | os.PathLike[str] | None = None,
    classes: ModelClasses | None = None,
) -> EvalResult:
    """Predict every batch of ``loader`` and score it against its labels.

    ``options``: scales, flip, sliding window and mixed precision (an
    :class:`~tufl.evaluation.options.EvalConfig` is one). Batches are dicts with ``"image"`` (uint8 ``[B, 3, h, w]``), ``"label"`` (int
    ``[B, H, W]`` train ids at full resolution, 255 = ignore) and ``"index"``. When
    the dataset resized the image, the class probabilities are resized (bilinear)
    to the label size before the argmax; labels are never resized. The model is
    moved to ``device`` and run in eval mode (its mode is restored afterwards).
    Under torch.distributed the counts are summed over ranks, so every rank returns
    the result for the union of the ranks' data.

    ``save_dir``: also write each prediction as ``trainid/<name>.png`` and
    ``color/<name>.png``, ``<name>`` being the batch's ``"name"`` entry (file stem)
    if present, else the zero-padded ``"index"``.

    ``classes`` (the model's class set; default: the class definition file of the
    loader's dataset, if it has one) gives the class names of the result and the colours.
    """
    if classes is None:
        classes = dataset_classes(loader)
    if classes is not None and classes.num_classes != num_classes:
        raise ValueError(f"the class set {classes.origin} has {classes.num_classes} classes, "
                         f"the model predicts {num_classes}")
    device = torch.device(device)
    model.to(device)
    confusion = ConfusionMatrix(num_classes, device)
    num_images = 0
    show = progress and (not dist.is_available() or not dist.is_initialized() or dist.get_rank() == 0)
    with eval_mode(model):
        for batch in progress_bar(loader, desc="evaluate", unit="batch", disable=not show):
            label = _batch_tensor(batch, "label").to(device, non_blocking=True)
            if label.dim() != 3:
                raise ValueError(f"expected labels of shape [B, H, W], got {tuple(label.shape)}")
            probs = predict_probs(model, _batch_tensor(batch, "image"), options, num_classes)
            if probs.shape[-2:] != label.shape[-2:]:
                probs = F.interpolate(probs, size=label.shape[-2:], mode="bilinear", align_corners=False)
            pred = probs.argmax(dim=1)
            confusion.update(pred, label)
            num_images += label.shape[0]
            if save_dir is not None:
                _save_predictions(Path(save_dir), batch, pred, num_classes, classes)
    confusion.all_reduce()
    settings = InferenceOptions.settings(options)
    # The Cityscapes sets are scored by their benchmarks' protocol (the default names), own class sets not.
    names = classes.names if classes is not None and not classes.is_cityscapes else None
    return EvalResult.from_confusion(confusion, _sum_over_ranks(num_images, device), settings, class_names=names)


def dataset_classes(loader: object) -> ModelClasses | None:
    """The classes of an evaluation loader's dataset's class definition file (``loader.dataset.base``), if any."""
    base = getattr(getattr(loader, "dataset", None), "base", None)
    class_set = getattr(base, "class_set", None)
    return ModelClasses.of_class_set(class_set) if class_set is not None else None


def write_eval_report(
    result: EvalResult,
    out_dir: str | os.PathLike[str] | None,
    checkpoint_path: str | os.PathLike[str],
    checkpoint_kind: CheckpointKind,
    metadata: Mapping[str, Scalar] | None = None,
) -> tuple[Path, Path]:
    """Write ``eval_<kind>.csv`` and ``eval_<kind>.json`` (default: next to the checkpoint).

    Both files name the evaluated checkpoint (path and kind, "last" or "best")
    followed by ``metadata`` (e.g. dataset, split, config) and the scores.
    Returns the CSV and JSON paths.
    """
    if checkpoint_kind not in ("last", "best"):
        raise ValueError(f"checkpoint_kind must be 'last' or 'best', got {checkpoint_kind!r}")
    checkpoint = Path(checkpoint_path)
    folder = Path(out_dir) if out_dir is not None else checkpoint.parent
    header: dict[str, Scalar] = {"checkpoint": str(checkpoint), "checkpoint_kind": checkpoint_kind}
    header.update(metadata or {})
    stem = f"eval_{checkpoint_kind}"
    csv_path = write_csv(result, folder / f"{stem}.csv", header)
    json_path = write_json(result, folder / f"{stem}.json", header)
    return csv_path, json_path


def _batch_tensor(batch: Mapping[str, Any], key: str) -> Tensor:
    value = batch.get(key) if isinstance(batch, Mapping) else None
    if not isinstance(value, Tensor):
        raise TypeError(f"evaluation batches must be dicts with a tensor {key!r}, got {type(batch).__name__}")
    return value


def _save_predictions(folder: Path, batch: Mapping[str, Any], pred: Tensor, num_classes: int,
                      classes: ModelClasses | None) -> None:
    palette = classes.palette() if classes is not None else None
    names = batch.get("name")
    if names is None:
        names = [f"{int(i):06d}" for i in _batch_tensor(batch, "index").reshape(-1).tolist()]
    for name, ids in zip(names, pred.to(torch.uint8).cpu(), strict=True):
        stem = Path(str(name)).stem
        save_train_ids(folder / "trainid" / f"{stem}.png", ids)
        save_color(folder / "color" / f"{stem}.png", ids, num_classes, palette=palette)


def _sum_over_ranks(value: int, device: torch.device) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    total = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return int(total)
