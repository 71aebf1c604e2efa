"""Faster computations of TUFL's per-pixel terms, chosen by ``loss.tufl.backend``.

:func:`tufl.losses.tufl.focal_pixel_terms` defines the per-pixel loss, confidence
and pseudo-class in plain differentiable torch (the ``torch`` backend). The other
backends compute the same three maps and their gradients faster; the threshold
update, masking, OHEM and the mean stay in :mod:`tufl.losses.tufl`, which does not
know how the maps were computed. Tests check every backend against the definition.

| backend | device | how |
| --- | --- | --- |
| ``torch`` | any | the definition, gradients by autograd |
| ``fused`` | any | hand-derived gradients written in the forward pass; on the CPU in cache-sized chunks with memory kept between calls (:mod:`.fused`) |
| ``triton`` | CUDA | two Triton kernels, one read of the logits each way (:mod:`.triton`); elsewhere, or if the kernels fail on first use, ``fused`` |

``auto`` picks ``triton`` on CUDA and ``fused`` elsewhere: each is kept because it
made a whole training iteration faster than the next simpler backend
(docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tufl.losses.backends.fused import fused_pixel_terms
from tufl.losses.backends.reused_memory import ReusedMemory
from tufl.losses.backends.triton import triton_pixel_terms

# (weak, strong, gamma, focal_type, class_weights, detach_focal, memory) -> (loss, conf, cls)
PixelTerms = Callable[[Tensor, Tensor, float, int, "Tensor | None", bool, "ReusedMemory | None"],
                      tuple[Tensor, Tensor, Tensor]]

BACKEND_NAMES = ("auto", "torch", "fused", "triton")
FAST_BACKENDS: dict[str, PixelTerms] = {"fused": fused_pixel_terms, "triton": triton_pixel_terms}


def backend_problems(backend: str) -> list[str]:
    """``["backend: ..."]`` unless ``backend`` names a backend."""
    if backend in BACKEND_NAMES:
        return []
    return [f"backend: unknown TUFL backend {backend!r}; choose one of {BACKEND_NAMES}"]


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that ``backend`` means on ``device`` (``auto``: triton on CUDA, else fused)."""
    if backend_problems(backend):
        raise ValueError(backend_problems(backend)[0])
    if backend == "auto":
        return "triton" if device.type == "cuda" else "fused"
    return backend


__all__ = ["BACKEND_NAMES", "FAST_BACKENDS", "PixelTerms", "ReusedMemory", "backend_problems", "resolve_backend"]
