"""Test-time inference: single/multi-scale, flip averaging, sliding windows, AMP.

Everything runs on the model's device. The model follows the contract of
:mod:`tufl.models.segmentor`: RGB images in ``[0, 255]`` in, a ``SegOutput`` whose
``main`` logits are at the input resolution out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tufl.evaluation.options import InferenceOptions


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def amp_dtype(device: torch.device) -> torch.dtype:
    """Mixed-precision dtype on ``device``: bfloat16 where supported, else float16 (CUDA)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast_context(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Autocast to :func:`amp_dtype` on ``device`` when enabled, else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device))


def forward_logits(model: nn.Module, images: Tensor, amp: bool = False) -> Tensor:
    """Main logits ``[B, C, H, W]`` (float32) of ``model`` for ``images`` on its device."""
    with autocast_context(images.device, amp):
        output = model(images)
    logits = getattr(output, "main", None)
    if not isinstance(logits, Tensor):
        raise TypeError(f"the model must return a SegOutput with a 'main' tensor, got {type(output).__name__}")
    if logits.dim() != 4 or logits.shape[0] != images.shape[0] or logits.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"main logits of shape {tuple(logits.shape)} do not match input {tuple(images.shape)}: "
            "expected [B, C, H, W] at the input resolution"
        )
    return logits.float()


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of length ``window`` covering ``size`` with ``stride``.

    The last window is aligned with the end, so every position is covered; a size
    not larger than the window gives one window at 0.
    """
    if size <= window:
        return [0]
    return [*range(0, size - window, stride), size - window]


def sliding_window_logits(
    model: nn.Module,
    images: Tensor,
    window: tuple[int, int],
    stride: tuple[int, int],
    amp: bool = False,
) -> Tensor:
    """Logits of ``images`` from overlapping ``window`` crops, averaged where they overlap.

    An input smaller than the window is zero-padded at the bottom/right up to the
    window size and the padding is cropped from the result.
    """
    (height, width), (win_h, win_w) = images.shape[-2:], window
    pad_h, pad_w = max(win_h - height, 0), max(win_w - width, 0)
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h))
    padded_h, padded_w = images.shape[-2:]
    total: Tensor | None = None
    count = images.new_zeros((1, 1, padded_h, padded_w), dtype=torch.float32)
    for top in window_starts(padded_h, win_h, stride[0]):
        for left in window_starts(padded_w, win_w, stride[1]):
            rows, cols = slice(top, top + win_h), slice(left, left + win_w)
            logits = forward_logits(model, images[:, :, rows, cols], amp)
            if total is None:
                total = logits.new_zeros((images.shape[0], logits.shape[1], padded_h, padded_w))
            total[:, :, rows, cols] += logits
            count[:, :, rows, cols] += 1.0
    assert total is not None
    return (total / count)[:, :, :height, :width]


def predict_probs(
    model: nn.Module,
    images: Tensor,
    options: InferenceOptions = InferenceOptions(),
    num_classes: int | None = None,
) -> Tensor:
    """Class probabilities ``[B, C, H, W]`` (float32, on the model's device) for ``images``.

    ``images``: ``[B, 3, H, W]`` RGB in ``[0, 255]`` (uint8 or float), any device.
    For each of ``options.scales`` the input is resized (bilinear) and predicted; with
    ``options.flip`` its mirror image is predicted in the same batch and the result
    mirrored back. Each view's softmax is resized back to ``H x W`` and the views are
    averaged, so the result is a probability map whose argmax is the prediction.

    ``options.window=(h, w)`` predicts each (scaled) input by sliding windows with
    ``options.stride`` (default: the window, i.e. no overlap); overlapping logits are
    averaged. ``num_classes``, when given, is checked against the model output.
    ``options.amp`` runs the network under :func:`autocast_context`. The model's mode is
    left as it is: call ``model.eval()`` (or use :func:`eval_mode`) first.
    """
    _check_arguments(images, options)
    scales, flip, window, stride, amp = options.scales, options.flip, options.window, options.window_stride, options.amp
    device = model_device(model)
    x = images.to(device, non_blocking=True).float()
    height, width = x.shape[-2:]
    total: Tensor | None = None
    with torch.no_grad():
        for scale in scales:
            size = (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))
            scaled = x if size == (height, width) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
            if window is None:
                logits = forward_logits(model, batch, amp)
            else:
                assert stride is not None
                logits = sliding_window_logits(model, batch, window, stride, amp)
            if num_classes is not None and logits.shape[1] != num_classes:
                raise ValueError(f"the model predicts {logits.shape[1]} classes, expected {num_classes}")
            probs = logits.softmax(dim=1)
            if flip:
                plain, mirrored = probs.chunk(2)
                probs = plain + mirrored.flip(-1)
            if probs.shape[-2:] != (height, width):
                probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
            total = probs if total is None else total + probs
    assert total is not None
    return total / (len(scales) * (2 if flip else 1))


def _check_arguments(images: Tensor, options: InferenceOptions) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
    problems = options.problems()
    if problems:
        raise ValueError("; ".join(problems))
