"""The ``triton`` backend: TUFL's per-pixel terms as Triton kernels on CUDA.

The kernels (:mod:`tufl.losses.backends.triton_kernels`) read each logit once
forward and once backward; they handle contiguous float32 CUDA logits of up to 64
classes. Triton ships with PyTorch's CUDA builds and compiles on first use, which
can fail where PyTorch itself works (no C compiler, a GPU Triton does not
support). Where the kernels cannot run (not importable, another device or dtype,
too many classes) or their first use in the process fails (one warning says why),
the call goes to the ``fused`` backend; a failure after the kernels once worked is
an error like any other.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from types import ModuleType

import torch
from torch import Tensor

from tufl.losses.backends.fused import flat_pixels, fused_pixel_terms, pixel_maps
from tufl.losses.backends.reused_memory import ReusedMemory


@functools.cache
def kernel_module() -> ModuleType | None:
    """:mod:`tufl.losses.backends.triton_kernels`, or ``None`` where Triton cannot be imported."""
    try:
        return importlib.import_module("tufl.losses.backends.triton_kernels")
    except ImportError:
        return None


class KernelStatus:
    """The kernels' state in this process: ``worked`` once a call succeeded, ``failure``
    (the error) once they were given up."""

    def __init__(self) -> None:
        self.worked = False
        self.failure: str | None = None


STATUS = KernelStatus()


def kernels_for(device: torch.device, dtype: torch.dtype, num_classes: int) -> ModuleType | None:
    """The kernel module if it handles such logits (CUDA; float32, or lower precision computed
    in float32; at most 64 classes) and has not failed in this process, else ``None``."""
    computed_in = torch.promote_types(dtype, torch.float32)
    if device.type != "cuda" or computed_in != torch.float32 or STATUS.failure is not None:
        return None
    module = kernel_module()
    if module is None or num_classes > module.MAX_CLASSES:
        return None
    return module


def triton_pixel_terms(
    weak_logits: Tensor, strong_logits: Tensor, gamma: float, focal_type: int, class_weights: Tensor | None,
    detach_focal: bool, memory: ReusedMemory | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(loss, conf, cls)`` like :func:`tufl.losses.tufl.focal_pixel_terms`, by the Triton kernels
    where they apply (their pseudo-class is the first largest logit), else by the fused backend."""
    options = (gamma, focal_type, class_weights, detach_focal)
    kernels = kernels_for(weak_logits.device, weak_logits.dtype, weak_logits.shape[1])
    if kernels is None:
        return fused_pixel_terms(weak_logits, strong_logits, *options, memory)
    weak, strong = flat_pixels(weak_logits, torch.float32), flat_pixels(strong_logits, torch.float32)
    try:
        maps = kernels.FocalConsistencyTriton.apply(weak, strong, class_weights, float(gamma), int(focal_type),
                                                    bool(detach_focal))
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:  # e.g. Triton cannot compile for this GPU: keep going without
        if STATUS.worked:
            raise
        STATUS.failure = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"TUFL: the Triton kernels failed on first use ({STATUS.failure}); "
                      "using the fused backend from now on", RuntimeWarning, stacklevel=2)
        return fused_pixel_terms(weak_logits, strong_logits, *options, memory)
    STATUS.worked = True
    return pixel_maps(maps, weak_logits)
