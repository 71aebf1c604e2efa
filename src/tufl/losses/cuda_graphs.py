"""CUDA graphs for TUFL's training calls (``TUFL(cuda_graphs=True)``).

Besides its two per-pixel kernels, a TUFL call on a GPU is a few dozen small
operations on per-pixel maps (the keys, sort and binary searches of the threshold
update, the masked mean), and each launch, from Python, costs more than its work.
A CUDA graph records the kernels once and replays them with one launch.
:class:`GraphedSteps` records a pure step function with
:func:`torch.cuda.make_graphed_callables`, which graphs the forward pass and the
backward pass separately; one recording per input signature.

The graphs own their inputs, outputs and gradients: each call copies its inputs
into the recorded ones, and the next call overwrites what the previous one
returned. The caller copies what it keeps, and each call's backward must run
before the next call (checked).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class GraphedSteps:
    """CUDA graphs of one step function, recorded on first use for each input signature.

    ``step(*tensors)`` must be pure (no writes to its inputs or any other state)
    and return a tuple of tensors, the first one the differentiable loss.
    """

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._graphs: dict[tuple, Callable[..., tuple[Tensor, ...]]] = {}
        self._backward_pending = False

    def __call__(self, step: Callable[..., tuple[Tensor, ...]], key: tuple, *tensors: Tensor) -> tuple[Tensor, ...]:
        """``step(*tensors)`` through the graphs recorded for ``key`` (plus the tensors' signature)."""
        if self._backward_pending:
            raise RuntimeError(
                f"{self._owner}: the previous loss was not back-propagated; with cuda_graphs=True every call's "
                "backward must run before the next call (its graphs hold one step's state), or turn cuda_graphs off"
            )
        signature = key + tuple((t.shape, t.dtype, t.device, t.requires_grad) for t in tensors)
        graphed = self._graphs.get(signature)
        if graphed is None:
            samples = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in tensors)
            graphed = torch.cuda.make_graphed_callables(step, samples)
            self._graphs[signature] = graphed
        outputs = graphed(*tensors)
        if outputs[0].requires_grad:
            self._backward_pending = True
            outputs[0].register_hook(self._backward_ran)
        return outputs

    def __getstate__(self) -> dict:  # copies and pickles start without recordings
        return {"_owner": self._owner}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["_owner"])

    def __deepcopy__(self, memo: dict) -> GraphedSteps:
        return GraphedSteps(self._owner)

    def _backward_ran(self, grad: Tensor) -> Tensor:
        self._backward_pending = False
        return grad
