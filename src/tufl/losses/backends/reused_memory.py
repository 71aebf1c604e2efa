"""Large CPU tensors whose memory is kept from one loss call to the next.

A fresh tensor of tens of MiB is mapped anew by the allocator, and the first write
to each 4 KiB page costs a page fault: for the two gradient maps of TUFL at
19 x 512 x 1024, batch 2, that is about a third of the fused loss's time on a
2-vCPU machine. CUDA's caching allocator already reuses memory, so this is for
the CPU only.

Memory is handed out again only when nothing outside this object still uses it
(a ``.grad`` that kept the tensor, an earlier call whose backward has not run, a
caller that kept a returned map): the reuse can never overwrite a tensor that
someone can still see. The check reads the reference count of the memory block
(``torch._C._storage_Use_Count``, which ``torch._inductor`` also relies on); where
that is unavailable every request gets fresh memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

_storage_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _held_only_here(flat: Tensor) -> bool:
    """Whether ``flat`` is the only tensor that references its memory."""
    if _storage_use_count is None:
        return False
    storage = flat.untyped_storage()
    return _storage_use_count(storage._cdata) == 2  # ``flat`` itself and ``storage`` above


class ReusedMemory:
    """Named CPU buffers, reused across calls while no one else holds them.

    Scratch, not state: copies and pickles of an owner start with no buffers.
    """

    def __init__(self) -> None:
        self._flat: dict[str, Tensor] = {}

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._flat = {}

    def __deepcopy__(self, memo: dict) -> ReusedMemory:
        return ReusedMemory()

    def tensor(self, name: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
        """An uninitialised tensor of ``shape``: the memory kept under ``name`` if free and large enough."""
        if torch.is_inference_mode_enabled():  # inference tensors could not be written outside it later
            return torch.empty(tuple(shape), dtype=dtype, device=device)
        numel = math.prod(shape)
        flat = self._flat.get(name)
        if (
            flat is None
            or flat.dtype != dtype
            or flat.device != device
            or flat.numel() < numel
            or not _held_only_here(flat)
        ):
            flat = torch.empty(numel, dtype=dtype, device=device)
            self._flat[name] = flat
        return flat[:numel].view(tuple(shape))

    def clear(self) -> None:
        """Drop every kept buffer (their memory is freed once no one else holds it)."""
        self._flat.clear()
