"""Whether a set of Triton kernels may be used in this process, and the fallback when they fail.

Triton compiles on first use, and that can fail where PyTorch itself works (no C
compiler, a GPU Triton does not support). A :class:`KernelStatus` lets a loss
fall back to torch operations, with one warning, when the kernels fail before they
ever worked; later failures are errors like any other. :func:`kernel_module`
imports a kernel module where Triton is installed.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import TypeVar

import torch

T = TypeVar("T")


@functools.cache
def kernel_module(name: str) -> ModuleType | None:
    """The Triton kernel module ``name`` (imported once), or ``None`` where Triton cannot be imported."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class KernelStatus:
    """One kernel set's state in this process (a process-wide fact): ``worked`` once a call
    succeeded, ``failure`` (the error) once the kernels were given up."""

    def __init__(self, kernels: str, instead: str) -> None:
        self.kernels, self.instead = kernels, instead
        self.worked = False
        self.failure: str | None = None

    def run(self, call: Callable[[], T], stacklevel: int = 3) -> T | None:
        """``call()``, which uses the kernels; ``None`` if it fails before the kernels ever worked
        (they are then given up, after one warning). Out-of-memory errors, and failures once
        the kernels have worked, are raised."""
        try:
            result = call()
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # e.g. Triton cannot compile for this GPU: keep going without
            if self.worked:
                raise
            self.failure = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"TUFL: {self.kernels} failed on first use ({self.failure}); {self.instead} from now on",
                          RuntimeWarning, stacklevel=stacklevel)
            return None
        self.worked = True
        return result
