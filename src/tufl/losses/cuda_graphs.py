"""CUDA graphs for TUFL's training calls (``TUFL(cuda_graphs=True)``).

Besides its two per-pixel kernels, a TUFL call on a GPU is a few dozen small
operations (the passes of the threshold statistic, the threshold update, the masked
mean), and each launch, from Python, costs more than its work.
A CUDA graph records the kernels once and replays them with one launch.
:class:`StepGraphs` records a step's forward pass and backward pass as two graphs,
once per input signature, and replays them from an autograd function.

A graph reads and writes fixed addresses. The inputs of a step are of three kinds:

- *addressed* tensors (the logit maps) are read through a small device table of
  their addresses, which the kernels load (:mod:`tufl.losses.focal_triton`): each
  call writes the new addresses into the table, and nothing is copied;
- *held* tensors (the loss's own buffers) are used in place, and a new address
  means a new recording;
- *copied* tensors are copied into the recording's own tensors when their address
  differs (a step without a table takes the logits this way).

A call returns copies of the outputs; the gradients stay in the graphs' memory,
which the next call overwrites. Each call's backward must run before the next call,
unless its loss and everything computed from it are gone (checked). The new values
of held tensors (TUFL's thresholds and step count) are written by the forward graph
itself: each tensor operation launched from Python costs several microseconds of
host time, and a graphed call's host time is of the order of its GPU time.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# Untimed runs of a step before its recording: compilation and autotuning happen there.
WARM_UP_RUNS = 2


class GraphableStep(Protocol):
    """A training step in two pure halves, each recordable as one CUDA graph."""

    def forward(self, table: Tensor | None, *inputs: Tensor) -> tuple[tuple[Tensor, ...], Any, tuple]:
        """``(outputs, state, updates)``: ``outputs[0]`` the differentiable loss, the others not
        differentiable; ``state`` whatever :meth:`backward` needs; ``updates`` the new value of
        each held tensor (``None`` to leave it), which the recorded graph writes. ``inputs``
        are the held tensors, then the copied ones."""

    def backward(self, table: Tensor | None, grad_output: Tensor, outputs: tuple[Tensor, ...], state: Any) -> tuple:
        """Gradients of ``outputs[0]`` (scaled by ``grad_output``) for the addressed tensors,
        then the copied ones (``None`` where none is wanted)."""


def _warm_up(run: Callable[[], None], device: torch.device) -> None:
    """``run`` on a side stream, as the graphs will be recorded (CUDA's advice)."""
    current = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(current)
    with torch.cuda.stream(side):
        for _ in range(WARM_UP_RUNS):
            run()
    current.wait_stream(side)


def _capture(function: Callable[[], Any], pool: Any = None) -> tuple[Any, list]:
    """Record ``function()`` as a CUDA graph: ``(graph, [result])``; a replay rewrites the
    result's tensors in place (the list is what a replay may rebind)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        result = [function()]
    return graph, result


class _Recording:
    """One signature's graphs and the tensors they own."""

    def __init__(self, step: GraphableStep, addressed: tuple[Tensor, ...], held: tuple[Tensor, ...],
                 copied: tuple[Tensor, ...]) -> None:
        device = (addressed + held + copied)[0].device
        self.addresses = tuple(t.data_ptr() for t in addressed)
        self.table = torch.tensor(self.addresses, dtype=torch.int64, device=device) if addressed else None
        self.copied = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in copied)
        inputs = held + self.copied

        def forward_and_backward() -> None:
            outputs, state, _ = step.forward(self.table, *inputs)
            step.backward(self.table, torch.ones_like(outputs[0]), outputs, state)

        def forward_and_updates() -> tuple[tuple[Tensor, ...], Any]:
            outputs, state, updates = step.forward(self.table, *inputs)
            with torch.no_grad():
                for tensor, update in zip(held, updates):
                    if update is not None:
                        tensor.copy_(update)
            return outputs, state

        _warm_up(forward_and_backward, device)  # without the updates
        self.forward_graph, self.forward_result = _capture(forward_and_updates)
        self.grad_output = torch.empty_like(self.forward_result[0][0][0])
        self.backward_graph, self.backward_result = _capture(
            lambda: step.backward(self.table, self.grad_output, *self.forward_result[0]), self.forward_graph.pool()
        )

    def point_at(self, addressed: tuple[Tensor, ...], copied: tuple[Tensor, ...]) -> None:
        """Make the next replay read ``addressed`` (table entries) and ``copied`` (copies)."""
        addresses = tuple(t.data_ptr() for t in addressed)
        for index, (new, old) in enumerate(zip(addresses, self.addresses)):
            if new != old:
                self.table[index].fill_(new)
        self.addresses = addresses
        for static, tensor in zip(self.copied, copied):
            if static.data_ptr() != tensor.data_ptr():
                static.detach().copy_(tensor)


class _Replay(torch.autograd.Function):
    """The recorded forward graph, returning copies of its outputs; the backward replays the
    recorded backward graph."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, graphs: StepGraphs, recording: _Recording, *tensors: Tensor
    ) -> tuple[Tensor, ...]:
        ctx.recording = recording
        graphs.last_call = weakref.ref(ctx)  # alive while the loss's graph is: its backward may still come
        ctx.save_for_backward(*tensors)  # the backward graph reads them: kept alive, and checked for changes
        recording.forward_graph.replay()
        outputs = tuple(o.clone() for o in recording.forward_result[0][0])
        ctx.mark_non_differentiable(*outputs[1:])
        return outputs

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor, *_grads: Tensor) -> tuple:  # type: ignore[override]
        if ctx.recording is None:
            raise RuntimeError("a CUDA-graphed TUFL loss can be back-propagated only once (retain_graph is not "
                               "supported)")
        recording, ctx.recording = ctx.recording, None
        ctx.saved_tensors  # noqa: B018 -- raises if an input was modified in place since the forward
        recording.grad_output.copy_(grad_output)
        recording.backward_graph.replay()
        return (None, None, *(None if g is None else g.detach() for g in recording.backward_result[0]))


class StepGraphs:
    """CUDA graphs of one loss's training steps, recorded on first use for each input signature."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._recordings: dict[tuple, _Recording] = {}
        self.last_call: weakref.ref | None = None  # the last call's autograd node

    def __call__(
        self,
        make_step: Callable[[], GraphableStep],
        key: tuple,
        addressed: tuple[Tensor, ...] = (),
        held: tuple[Tensor, ...] = (),
        copied: tuple[Tensor, ...] = (),
    ) -> tuple[Tensor, ...]:
        """The step that ``make_step()`` builds (called when a signature is first seen), replayed
        from the graphs recorded for ``key`` and the tensors' signature.

        ``key`` must name everything the step depends on besides its tensors. Returns
        copies of the forward outputs; the first is differentiable with respect to the
        addressed and copied tensors.
        """
        last = None if self.last_call is None else self.last_call()
        if last is not None and last.recording is not None:
            raise RuntimeError(
                f"{self._owner}: the previous loss was not back-propagated; with cuda_graphs=True every call's "
                "backward must run before the next call (its graphs hold one step's state), or the loss be dropped "
                "(with everything computed from it); or turn cuda_graphs off"
            )
        signature = (
            key,
            tuple((t.shape, t.dtype, t.device, t.requires_grad) for t in addressed + copied),
            tuple((t.shape, t.dtype, t.device, t.data_ptr()) for t in held),
        )
        recording = self._recordings.get(signature)
        if recording is None:
            recording = self._recordings[signature] = _Recording(make_step(), addressed, held, copied)
        recording.point_at(addressed, copied)
        return _Replay.apply(self, recording, *addressed, *copied)

    def __getstate__(self) -> dict:  # copies and pickles start without recordings
        return {"_owner": self._owner}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["_owner"])

    def __deepcopy__(self, memo: dict) -> StepGraphs:
        return StepGraphs(self._owner)
