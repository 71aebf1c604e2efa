"""Stop a run cleanly when the cluster asks: finish the iteration, checkpoint, exit.

SLURM and Kubernetes send SIGTERM before they kill a job (some sites SIGUSR1, a
configurable time ahead). :class:`StopSignals` turns the first such signal into a
request that the training loop honours at the end of the current iteration: it
writes a checkpoint and the command exits with :data:`PREEMPTED_EXIT_STATUS`. A
second signal exits at once (status ``128 + signal number``, as a shell reports a
process killed by it), without a checkpoint.

Under ``torchrun`` the ranks may receive the signal at different iterations; every
rank therefore asks all ranks at the end of each iteration (one all-reduce of one
integer over a CPU (gloo) group, so it never waits for the GPU) and all stop at the
same iteration, which keeps every collective of the checkpoint matched.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

from tufl.runtime.distributed import DistContext

# The exit status of a run stopped by a signal after writing its checkpoint:
# "preempted, resume me" (`tufl train ... --resume auto` continues it).
PREEMPTED_EXIT_STATUS = 3


class Preempted(Exception):
    """The run stopped at the end of an iteration because of a signal; its checkpoint is written."""

    def __init__(self, signal_name: str, iteration: int, checkpoint: str) -> None:
        self.signal_name = signal_name
        self.iteration = iteration
        self.checkpoint = checkpoint
        super().__init__(f"stopped by {signal_name} at iteration {iteration}; checkpoint: {checkpoint}")


def signal_number(name: str) -> int:
    """``"SIGTERM"``/``"TERM"`` -> its number; ValueError naming the choices otherwise."""
    key = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    number = getattr(signal, key, None)
    if not isinstance(number, int) or key.startswith("SIG_"):
        raise ValueError(f"unknown signal {name!r} (e.g. SIGTERM, SIGUSR1, SIGINT)")
    return int(number)


class StopSignals:
    """Catches ``names`` while active (a context manager); see the module docstring."""

    def __init__(self, names: tuple[str, ...] | list[str], ctx: DistContext) -> None:
        self.numbers = [signal_number(n) for n in names]
        self.ctx = ctx
        self.received: str | None = None
        self._previous: dict[int, Any] = {}
        self._group = None
        self._owner = os.getpid()

    def __enter__(self) -> StopSignals:
        if self.ctx.enabled and dist.is_initialized():
            backend = dist.get_backend()
            self._group = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            self._owner = os.getpid()
            for number in self.numbers:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if os.getpid() != self._owner:
            # A process forked while the run is active (a multiprocessing pool's worker) inherits
            # this handler; the signal is meant for it (Pool.terminate), not for the run: die of it.
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
            return
        name = signal.Signals(number).name
        if self.received is not None:
            # os.write: safe inside a signal handler, unlike print
            os.write(2, f"\n[tufl] second signal ({name}): exiting now, without a checkpoint\n".encode())
            os._exit(128 + number)
        self.received = name
        os.write(2, f"\n[tufl] {name} received: finishing this iteration, then writing a checkpoint "
                    f"(send it again to exit at once)\n".encode())

    def stop_requested(self) -> str | None:
        """The name of the signal that asks this run (any rank) to stop, or None; all ranks agree."""
        if self._group is None:
            return self.received
        # rank r's vote is its signal number (0 if none): MAX gives one signal to every rank
        vote = torch.tensor([signal_number(self.received) if self.received else 0], dtype=torch.int64)
        dist.all_reduce(vote, op=dist.ReduceOp.MAX, group=self._group)
        number = int(vote.item())
        if number and self.received is None:
            self.received = signal.Signals(number).name
        return self.received


def report_preempted(stop: Preempted) -> int:
    """Print how a stopped run continues; returns the exit status."""
    print(f"[tufl] {stop}. Resume with: tufl train --config ... --resume auto "
          f"(exit status {PREEMPTED_EXIT_STATUS})", file=sys.stderr, flush=True)
    return PREEMPTED_EXIT_STATUS
