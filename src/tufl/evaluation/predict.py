"""Predict image files and write the results as PNGs.

For inputs under a common folder, outputs mirror their relative paths:

    out_dir/color/<rel>.png     the model's class colours
    out_dir/overlay/<rel>.png   colours blended over the image
    out_dir/trainid/<rel>.png   train ids (greyscale)
    out_dir/labelIds/<rel>.png  Cityscapes label ids, optional (benchmark server format)

Each kind has its own folder so that, for example, ``out_dir/labelIds`` can be
given directly to the Cityscapes evaluation as its results folder. The colours are
those of the model's classes (:func:`model_classes`: stored in its checkpoint), or
the Cityscapes colours of their names. Videos are predicted by
:mod:`tufl.evaluation.video` with the same :func:`predict_train_ids`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tufl.data.class_set import ModelClasses, checkpoint_classes
from tufl.data.io import BadFileError, read_rgb
from tufl.data.labels import SUPPORTED_NUM_CLASSES, generic_palette
from tufl.evaluation.inference import eval_mode, model_device, predict_probs
from tufl.evaluation.options import InferenceOptions
from tufl.evaluation.predict_inputs import (  # noqa: F401 - collect_inputs and the suffixes are part of this API
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    SymlinkLoopError,
    collect_inputs,
    relative_output_names,
)
from tufl.evaluation.writers import (
    PaletteName,
    cityscapes_set_size,
    class_palette,
    save_color,
    save_label_ids,
    save_overlay,
    save_train_ids,
)
from tufl.runtime.progress import progress_bar


class PredictionFiles(NamedTuple):
    """The files written for one input image."""

    source: Path
    color: Path
    overlay: Path
    train_ids: Path
    label_ids: Path | None


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has a video suffix (:data:`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def predict_files(
    model: nn.Module,
    files: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    num_classes: int,
    device: torch.device | str,
    batch_size: int = 1,
    options: InferenceOptions = InferenceOptions(),
    resize: tuple[int, int] | None = None,
    label_ids: bool = False,
    alpha: float = 0.5,
    progress: bool = True,
    on_unreadable: Callable[[Path, str], None] | None = None,
    classes: ModelClasses | None = None,
    palette: PaletteName = "model",
    max_pixels: int | None = None,
) -> list[PredictionFiles]:
    """Predict each image file and write its colour, overlay and train-id PNGs.

    ``resize=(height, width)`` feeds the network that size; the probabilities are
    resized back, so every output has the size of its input image. Consecutive
    images of the same (network) size are predicted in batches of ``batch_size``.
    ``classes`` are the model's (default: :func:`default_classes`); ``palette``
    picks their colours (:func:`~tufl.evaluation.writers.class_palette`).
    ``label_ids`` also writes Cityscapes label ids (models of a Cityscapes class set
    only). The model is moved to ``device`` and run in eval mode. An image that
    cannot be read (or has more than ``max_pixels``: :func:`load_rgb`) raises
    ``ValueError``, unless ``on_unreadable(path, message)`` is given: it is then told,
    and the other images are predicted. An output that cannot be written raises
    ``OSError`` ("cannot write PATH: reason"); that image's other outputs are removed.
    """
    check_batching(batch_size, resize)
    classes = checked_classes(classes, num_classes)
    if label_ids:
        check_label_ids(classes)
    table = class_palette(classes, palette)
    sources = [Path(f) for f in files]
    if not sources:
        raise ValueError("no input files to predict")
    device = torch.device(device)
    model.to(device)
    out = Path(out_dir)
    names = relative_output_names(sources)
    written: list[PredictionFiles] = []
    with eval_mode(model), progress_bar(total=len(sources), desc="predict", unit="image", disable=not progress) as bar:
        def skip(source: Path, message: str) -> None:
            if on_unreadable is None:
                raise ValueError(message)
            on_unreadable(source, message)
            bar.update(1)

        for batch in _batches(sources, batch_size, resize, skip, max_pixels):
            images = [image for _, image in batch]
            preds = predict_train_ids(model, images, num_classes, options, resize)
            for (source, image), pred in zip(batch, preds, strict=True):
                written.append(_write(out, names[source], image, pred, num_classes, table, label_ids, alpha,
                                      source))
            bar.update(len(batch))
    return written


def default_classes(num_classes: int) -> ModelClasses:
    """The classes of a model that tells none: the Cityscapes set of 19/16/13 classes,
    else ``class_0``, ``class_1``, ... in generated colours."""
    if num_classes in SUPPORTED_NUM_CLASSES:
        return ModelClasses.cityscapes(num_classes)
    names = tuple(f"class_{i}" for i in range(num_classes))
    return ModelClasses(names, generic_palette(num_classes), origin=f"{num_classes} unnamed classes")


def model_classes(state: Any, num_classes: int, source: str) -> ModelClasses:
    """The classes of a checkpoint's model (:func:`~tufl.data.class_set.checkpoint_classes`,
    else :func:`default_classes`); ``ValueError`` naming ``source`` when their count is
    not the model's ``num_classes``."""
    classes = checkpoint_classes(state, source) or default_classes(num_classes)
    if classes.num_classes != num_classes:
        raise ValueError(f"{source}: the model predicts {num_classes} classes, but its class set "
                         f"({classes.origin or 'stored with it'}) has {classes.num_classes}")
    return classes


def checked_classes(classes: ModelClasses | None, num_classes: int) -> ModelClasses:
    """``classes`` (default: :func:`default_classes`), which must have ``num_classes`` classes."""
    if classes is None:
        return default_classes(num_classes)
    if classes.num_classes != num_classes:
        raise ValueError(f"the class set{' of ' + classes.origin if classes.origin else ''} has "
                         f"{classes.num_classes} classes, the model predicts {num_classes}")
    return classes


def check_label_ids(classes: ModelClasses) -> None:
    """``ValueError`` unless ``classes`` are a Cityscapes set, the only ones with Cityscapes label ids."""
    if cityscapes_set_size(classes) is None:
        shown = ", ".join(classes.names[:8]) + (", ..." if classes.num_classes > 8 else "")
        origin = f" from {classes.origin}" if classes.origin else ""
        raise ValueError(f"Cityscapes label ids need a model of the 19-, 16- or 13-class Cityscapes set; "
                         f"this one predicts {classes.num_classes} other classes ({shown}){origin}")


def check_batching(batch_size: int, resize: tuple[int, int] | None) -> None:
    """Raise ``ValueError`` for a non-positive batch size or a bad ``resize=(height, width)``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if resize is not None and (len(resize) != 2 or min(resize) < 1):
        raise ValueError(f"resize must be two positive sizes (height, width), got {resize}")


def predict_train_ids(
    model: nn.Module,
    images: Sequence[Tensor],
    num_classes: int,
    options: InferenceOptions = InferenceOptions(),
    resize: tuple[int, int] | None = None,
) -> list[np.ndarray]:
    """Train-id maps (uint8 ``[H, W]`` numpy, at each image's size) of uint8 ``[3, H, W]``
    images, predicted in one forward batch on the model's device.

    The images go to the device as uint8 and, with ``resize=(height, width)``, are
    resized there; without it they must share one size. The model's mode is left as
    it is (see :func:`~tufl.evaluation.inference.predict_probs` for the options).
    """
    device = model_device(model)
    if resize is None:
        network_input = torch.stack(list(images)).to(device, non_blocking=True)
    else:
        network_input = torch.stack([_resize(image.to(device, non_blocking=True), resize) for image in images])
    probs = predict_probs(model, network_input, options, num_classes)
    sizes = {tuple(image.shape[-2:]) for image in images}
    if len(sizes) == 1:  # one interpolation, one argmax and one copy for the whole batch
        size = sizes.pop()
        if probs.shape[-2:] != size:
            probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
        return list(probs.argmax(dim=1).to(torch.uint8).cpu().numpy())
    preds = []
    for k, image in enumerate(images):
        p = F.interpolate(probs[k : k + 1], size=image.shape[-2:], mode="bilinear", align_corners=False)
        preds.append(p[0].argmax(dim=0).to(torch.uint8).cpu().numpy())
    return preds


def load_rgb(path: Path, max_pixels: int | None = None) -> Tensor:
    """An image file as a uint8 ``[3, H, W]`` RGB tensor, read by :func:`tufl.data.io.read_rgb`:
    one over ``max_pixels`` (default: ``DEFAULT_MAX_IMAGE_PIXELS``) is refused from its header.
    ``ValueError`` naming the file when it cannot be read."""
    try:
        array = read_rgb(path, max_pixels=max_pixels)
    except BadFileError as error:
        raise ValueError(f"{path}: cannot read the image ({error.problem})") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _batches(
    sources: list[Path], batch_size: int, resize: tuple[int, int] | None, skip: Callable[[Path, str], None],
    max_pixels: int | None = None,
) -> Iterator[list[tuple[Path, Tensor]]]:
    """Consecutive (path, image) groups whose network inputs share one size; unreadable
    images go to ``skip(path, message)``."""
    batch: list[tuple[Path, Tensor]] = []
    for source in sources:
        try:
            image = load_rgb(source, max_pixels)
        except ValueError as error:
            skip(source, str(error))
            continue
        if batch and (len(batch) == batch_size or (resize is None and batch[0][1].shape != image.shape)):
            yield batch
            batch = []
        batch.append((source, image))
    if batch:
        yield batch


def _resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear (antialiased) resize of a ``[3, H, W]`` image to float ``[3, *size]``."""
    return F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def _write(
    out: Path,
    name: Path,
    image: Tensor,
    pred: np.ndarray,
    num_classes: int,
    palette: np.ndarray,
    label_ids: bool,
    alpha: float,
    source: Path,
) -> PredictionFiles:
    """Write one image's outputs, coloured with ``palette``; when one cannot be written, those
    already written are removed (no image is left with part of its outputs)."""
    file = name.parent / f"{name.name}.png"
    done: list[Path] = []

    def keep(path: Path) -> Path:
        done.append(path)
        return path

    try:
        return PredictionFiles(
            source=source,
            color=keep(save_color(out / "color" / file, pred, num_classes, palette)),
            overlay=keep(save_overlay(out / "overlay" / file, image, pred, num_classes, alpha, palette)),
            train_ids=keep(save_train_ids(out / "trainid" / file, pred)),
            label_ids=keep(save_label_ids(out / "labelIds" / file, pred, num_classes)) if label_ids else None,
        )
    except BaseException:
        for path in done:
            path.unlink(missing_ok=True)
        raise
