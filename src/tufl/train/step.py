"""The optimiser step of a training iteration, without a host synchronisation.

A step whose loss (on any rank) or gradients are not finite must leave no trace. The
decision stays a device tensor (``finite``, all-reduced with MIN under DDP) and is
applied on the device:

* the objective's state (TUFL thresholds) and the model's BatchNorm statistics,
  updated during the forward pass, are copied before it (:class:`DeviceSnapshot`) and
  put back with ``torch.where(finite, current, saved)``;
* the fused SGD kernel reads ``optimizer.found_inf`` and leaves weights and momentum
  untouched when it is set (:class:`OptimizerStep`); with fp16 loss scaling the
  GradScaler takes that decision from the gradients, which a dropped step poisons;
* a step that leaves a weight non-finite (a NaN learning rate, an overflowing update) is
  undone after it: the weights and the optimiser's state are copied before the step and
  put back with ``torch.where`` (:class:`WeightGuard`), and the step counts as skipped;
* the non-finite counters are device tensors (:class:`NonFiniteCounters`), read and
  checked against ``train.max_nonfinite`` when a log line is written.
:func:`finish_step` is that sequence after the backward pass.

Only the foreach (non-fused) SGD, where fused SGD is unavailable or turned off, reads the
flag on the host (one synchronisation per step), as does GradScaler with it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from tufl.runtime.distributed import DistContext
from tufl.train.optim import is_fused


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses."""


def step_generator(seed: int, iteration: int, rank: int, micro: int) -> torch.Generator:
    """The CPU generator of one micro-step's training-side draws (mixing)."""
    state = np.random.SeedSequence([seed, 7919, iteration, rank, micro]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def amp_settings(device: torch.device, enabled: bool) -> tuple[bool, torch.dtype]:
    """Whether autocast is on and its dtype: bf16 where supported, else fp16 (CUDA only)."""
    if not enabled or device.type != "cuda":
        return False, torch.float32
    return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def all_ranks_finite(finite: Tensor, ctx: DistContext) -> Tensor:
    """``finite`` (a bool device tensor) and-ed over the ranks: an all-reduce MIN, no host read."""
    if not ctx.enabled:
        return finite
    flag = finite.to(torch.float32).reshape(1)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return flag.reshape(()) > 0.5


def _by_device_and_dtype(tensors: Iterable[Tensor]) -> dict[tuple[torch.device, torch.dtype], list[Tensor]]:
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return groups


@torch.no_grad()
def all_finite(tensors: Iterable[Tensor], device: torch.device) -> Tensor:
    """Whether every element of ``tensors`` is finite (bool tensor on ``device``), read in one
    pass per device and dtype, without a host read."""
    found = torch.zeros((), dtype=torch.float32, device=device)
    for (where, _), group in _by_device_and_dtype(tensors).items():
        found_here = torch.zeros((), dtype=torch.float32, device=where)
        one = torch.ones((), dtype=torch.float32, device=where)
        # GradScaler's check: sets found_here where a value is inf/NaN (x 1.0 leaves them exact).
        torch._amp_foreach_non_finite_check_and_unscale_(group, found_here, one)
        found = found + found_here.to(device, non_blocking=True)
    return found == 0


def grads_finite(params: Iterable[nn.Parameter], device: torch.device) -> Tensor:
    """Whether every gradient is finite (bool device tensor), read in one pass per device and dtype."""
    return all_finite((p.grad for p in params if p.grad is not None), device)


def _copy_all(targets: list[Tensor], sources: list[Tensor]) -> None:
    torch._foreach_copy_(targets, sources)  # one multi-tensor copy (torch >= 2.1)


class DeviceSnapshot:
    """Copies of state tensors (loss thresholds, BatchNorm statistics), put back on the device.

    The tensors are flattened into one buffer per device and dtype, so saving and
    restoring take a few kernels whatever their number. Non-tensor entries of a state
    dict (``get_extra_state``) cannot be selected on the device: they are deep-copied and
    restored after a host read of the flag (no objective has any today).
    """

    def __init__(self, collect: Callable[[], Iterable[Tensor]], extra: nn.Module | None = None) -> None:
        self.collect = collect  # called at each save: a module may have replaced a buffer
        self.groups: list[list[Tensor]] = []
        self.saved: list[Tensor] = []
        self.extra_owner = extra
        self.extra: dict[str, Any] = {}

    @classmethod
    def of(cls, objective: nn.Module, model: nn.Module) -> DeviceSnapshot:
        """The objective's state tensors and the model's float and integer buffers. State under
        the objective's ``snapshot_exclude`` prefixes (an EMA teacher, which a step changes only
        after the decision, on the device) is left out: no model copy per step."""
        buffers = [b for b in model.buffers() if b.is_floating_point() or b.dtype == torch.long]
        exclude = tuple(getattr(objective, "snapshot_exclude", ()))

        def collect() -> list[Tensor]:
            state = objective.state_dict(keep_vars=True)
            return [v for k, v in state.items() if isinstance(v, Tensor) and not k.startswith(exclude)] + buffers

        has_extra = any(not isinstance(v, Tensor) for k, v in objective.state_dict().items()
                        if not k.startswith(exclude))
        return cls(collect, objective if has_extra else None)

    @staticmethod
    def _flat(tensors: list[Tensor]) -> Tensor:
        return torch.cat([t.reshape(-1) for t in tensors])

    def save(self) -> None:
        groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        seen: set[int] = set()
        for t in self.collect():
            if id(t) not in seen:
                seen.add(id(t))
                groups.setdefault((t.device, t.dtype), []).append(t.detach())
        self.groups = list(groups.values())
        self.saved = [self._flat(group) for group in self.groups]
        if self.extra_owner is not None:
            state = self.extra_owner.state_dict()
            self.extra = copy.deepcopy({k: v for k, v in state.items() if not isinstance(v, Tensor)})

    def restore_unless(self, keep: Tensor) -> None:
        """Put the saved values back unless ``keep`` (a bool device tensor) is true."""
        with torch.no_grad():
            for group, saved in zip(self.groups, self.saved):
                chosen = torch.where(keep.to(saved.device), self._flat(group), saved)
                _copy_all(group, [c.view(t.shape) for c, t in zip(chosen.split([t.numel() for t in group]), group)])
        if self.extra and not bool(keep):  # host read: only for objectives with non-tensor state
            self.extra_owner.load_state_dict(self.extra, strict=False)  # type: ignore[union-attr]


# Devices whose flag the weight check reads on the host (no device to wait for there).
HOST_READ_DEVICES = ("cpu",)


class WeightGuard:
    """Undoes, on the device, an optimiser step that left a weight or an optimiser state tensor
    non-finite (a NaN or huge learning rate, an overflowing update). :meth:`save` copies them
    before the step into one persistent buffer per device and dtype (memory: one copy of the
    weights and the optimiser state); :meth:`check` returns the flag and puts the copies back
    with ``torch.where`` where it is false; state the step created goes back to zeros (as it
    starts). A host read only for foreach AdamW on a GPU (its step counts live on the CPU).
    Under DDP the ranks compute the same update, so their flags agree without an all-reduce."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.saved: list[tuple[list[Tensor], list[Tensor]]] = []  # (tensors, their copies) per buffer
        self.known: set[int] = set()
        self._layout: tuple[tuple[int, int], ...] = ()

    def _tensors(self) -> list[Tensor]:
        out: list[Tensor] = []
        seen: set[int] = set()
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                for t in (p, *self.optimizer.state.get(p, {}).values()):
                    if isinstance(t, Tensor) and t.is_floating_point() and id(t) not in seen:
                        seen.add(id(t))
                        out.append(t)
        return out

    @torch.no_grad()
    def save(self) -> None:
        tensors = self._tensors()
        layout = tuple((id(t), t.numel()) for t in tensors)
        if layout != self._layout:  # the first step, or new state: new buffers
            self._layout, self.known = layout, {id(t) for t in tensors}
            self.saved = []
            for (device, dtype), group in _by_device_and_dtype(tensors).items():
                flat = torch.empty(sum(t.numel() for t in group), device=device, dtype=dtype)
                copies = [c.view(t.shape) for c, t in zip(flat.split([t.numel() for t in group]), group)]
                self.saved.append((group, copies))
        for group, copies in self.saved:
            _copy_all(copies, group)

    @torch.no_grad()
    def check(self, device: torch.device) -> Tensor:
        """Whether the step left every weight and state tensor finite (bool tensor on ``device``);
        where not, the step is undone."""
        tensors = self._tensors()
        finite = all_finite(tensors, device)
        if device.type in HOST_READ_DEVICES and bool(finite):  # nothing to wait for: restore only if needed
            return finite
        for group, copies in self.saved:
            keep = finite.to(group[0].device)  # a host read only for CPU state beside device weights
            for t, copy_ in zip(group, copies):
                torch.where(keep, t, copy_, out=t)
        for t in tensors:
            if id(t) not in self.known:  # created by this step
                t.masked_fill_(~finite.to(t.device), 0)
        return finite


class NonFiniteCounters:
    """Skipped steps, the current run of them and the longest run since the last check (device)."""

    def __init__(self, device: torch.device) -> None:
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)
        self.in_row = torch.zeros((), dtype=torch.int64, device=device)
        self.longest = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, finite: Tensor) -> None:
        bad = (~finite).to(torch.int64)
        self.skipped.add_(bad)
        self.in_row.add_(1).mul_(bad)
        torch.maximum(self.longest, self.in_row, out=self.longest)

    def read(self) -> dict[str, int]:
        """The checkpointed counters as plain ints (a host read)."""
        skipped, in_row = torch.stack([self.skipped, self.in_row]).tolist()
        return {"nonfinite_skipped": int(skipped), "nonfinite_in_row": int(in_row)}

    def load(self, counters: dict[str, int]) -> None:
        self.skipped.fill_(int(counters.get("nonfinite_skipped", 0)))
        self.in_row.fill_(int(counters.get("nonfinite_in_row", 0)))
        self.longest.copy_(self.in_row)

    def check(self, limit: int, iteration: int) -> None:
        """Raise :class:`NonFiniteLossError` when ``limit`` steps in a row were skipped since the
        last check (a host read; called when a log line is written)."""
        longest = int(self.longest)
        self.longest.copy_(self.in_row)
        if longest >= limit:
            raise NonFiniteLossError(
                f"{longest} non-finite losses in a row (steps skipped for a non-finite loss, gradient or "
                f"updated weight; train.max_nonfinite: {limit}) by iteration "
                f"{iteration}: stopping. Lower optim.lr, set train.grad_clip, disable train.amp, "
                "or check the data (tufl check-data)."
            )


class OptimizerStep:
    """Clip, then step the optimiser unless ``finite`` is false, without reading it on the host
    when the optimiser is fused."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 params: list[nn.Parameter], grad_clip: float | None, check_weights: bool = True) -> None:
        self.optimizer = optimizer
        self.scaler = scaler
        self.params = params
        self.grad_clip = grad_clip
        self.guard = WeightGuard(optimizer) if check_weights else None
        self.weights_finite: Tensor | None = None  # the last step's weight check (a device flag)
        self._momentum_ready = False

    @property
    def fused(self) -> bool:
        return is_fused(self.optimizer)

    def checks_gradients(self) -> bool:
        """Whether the caller must fold :func:`grads_finite` into the flag (GradScaler checks them itself)."""
        return not self.scaler.is_enabled()

    def __call__(self, finite: Tensor) -> Tensor | None:
        """Apply the step, undone when it leaves a weight non-finite (:class:`WeightGuard`; its flag
        is then ``weights_finite``); returns the gradient norm before clipping when ``grad_clip`` is set."""
        if self.fused:
            self._zero_missing_momentum()
        if self.guard is None:
            return self._step(finite)
        self.guard.save()
        norm = self._step(finite)
        self.weights_finite = self.guard.check(finite.device)
        return norm

    def _step(self, finite: Tensor) -> Tensor | None:
        norm = None
        if self.scaler.is_enabled():
            self._poison_unless(finite)  # the scaler finds inf and skips (and lowers its scale)
            if self.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
            self.scaler.step(self.optimizer)  # fused: found_inf on the device; foreach: a host read
            self.scaler.update()
            return norm
        if self.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        if self.fused:
            self.optimizer.found_inf = (~finite).to(torch.float32)  # type: ignore[attr-defined]
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf  # type: ignore[attr-defined]
        elif bool(finite):  # host read: the foreach kernels cannot skip on the device
            self.optimizer.step()
        return norm

    def _poison_unless(self, finite: Tensor) -> None:
        """Make one gradient element NaN when ``finite`` is false (x 1.0 otherwise: exact)."""
        grad = next((p.grad for p in self.params if p.grad is not None), None)
        if grad is None:
            return
        corner = grad[(0,) * grad.dim()] if grad.dim() else grad
        corner.mul_(torch.where(finite.to(grad.device), 1.0, float("nan")).to(grad.dtype))

    def _zero_missing_momentum(self) -> None:
        """Start momentum buffers at zero before the first step. The fused kernel otherwise
        fills them from the first step's gradients, and a first step skipped through
        ``found_inf`` would leave them uninitialised; ``0.9 * 0 + g`` is the same first update."""
        if self._momentum_ready:
            return
        ready = True
        for group in self.optimizer.param_groups:
            if group.get("momentum", 0) == 0:  # AdamW has no momentum buffer (its moments start at zero)
                continue
            for p in group["params"]:
                state = self.optimizer.state[p]
                if state.get("momentum_buffer") is None:
                    if p.grad is None:
                        ready = False
                        continue
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        self._momentum_ready = ready


def finish_step(finite: Tensor, update: OptimizerStep, snapshot: DeviceSnapshot,
                counters: NonFiniteCounters) -> tuple[Tensor, Tensor | None]:
    """The end of a step, after the backward pass: step the optimiser unless ``finite`` is false,
    and-in its weight check, put ``snapshot`` back unless the result is true and count it.
    Returns that flag and the gradient norm (``grad_clip``), all without a host read."""
    norm = update(finite)
    if update.weights_finite is not None:
        finite = finite & update.weights_finite
    snapshot.restore_unless(finite)
    counters.update(finite)
    return finite, norm


@dataclass
class StepLog:
    """The logged values of one step (a device vector), whether it counted, and its learning rate."""

    keys: tuple[str, ...]
    values: Tensor
    finite: Tensor
    lr: float


def stack_logs(logs: dict[str, Tensor]) -> tuple[tuple[str, ...], Tensor]:
    """Names and one float32 vector of a step's logged scalars (one kernel to accumulate), on the
    device of the first (the loss); a scalar some loss keeps on the CPU is copied over."""
    device = next(iter(logs.values())).device
    return tuple(logs), torch.stack([v.detach().float().reshape(()).to(device) for v in logs.values()])


class LogWindow:
    """Sums of the logged values of the counted steps since the last log line, on the device."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[tuple[str, ...], Tensor] = {}
        self.counts: dict[tuple[str, ...], Tensor] = {}
        self.lr_sum = 0.0
        self.steps = 0

    def add(self, step: StepLog) -> None:
        kept = torch.where(step.finite, step.values, 0.0)
        if step.keys in self.sums:
            self.sums[step.keys].add_(kept)
            self.counts[step.keys].add_(step.finite.to(torch.int64))
        else:
            self.sums[step.keys] = kept
            self.counts[step.keys] = step.finite.to(torch.int64)
        self.lr_sum += step.lr
        self.steps += 1

    def averages(self) -> dict[str, float]:
        """Mean of each value over the counted steps (one host read); ``lr`` over all steps."""
        out: dict[str, float] = {}
        for keys, sums in self.sums.items():
            count = int(self.counts[keys])
            if count:
                out.update(zip(keys, (v / count for v in sums.tolist())))
        if self.steps:
            out["lr"] = self.lr_sum / self.steps
        return out
