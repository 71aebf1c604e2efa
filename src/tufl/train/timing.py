"""How long the iterations of a run take, how much of it is waiting for data, and when it ends.

:class:`RunTiming` measures on the host: each iteration's wall time (validation,
checkpoints and inspection grids excluded through :meth:`RunTiming.paused`) and the
time spent in ``next(loader)`` of every stream (:meth:`RunTiming.data_wait`). After a
warm-up iteration it measures up to ``estimate_iterations`` iterations or
``estimate_seconds`` seconds, then offers one line with the expected duration of the
rest of the run (:meth:`RunTiming.estimate_line`).

On CUDA the host runs ahead of the device until the launch queue fills; the last
measured iteration therefore waits for the device once (``synchronize``), so the
estimate covers the device's work too.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Callable, Iterator

import torch

# The progress bar: iterations per second (or seconds per iteration) and the time left.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"

def format_duration(seconds: float) -> str:
    """``"4 h 38 min"``, ``"12 min"``, ``"45 s"``, ``"2 d 3 h"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def finish_time(now: datetime.datetime, seconds: float) -> str:
    """Local clock time ``seconds`` after ``now``: ``"02:14"``, with the date when not today."""
    end = now + datetime.timedelta(seconds=seconds)
    return end.strftime("%H:%M") if end.date() == now.date() else end.strftime("%a %d %b %H:%M")


class RunTiming:
    """Per-iteration wall seconds and data-wait seconds of this process's iterations.

    ``iteration_seconds[i]`` and ``data_wait_seconds[i]`` are the ``i``-th iteration
    this process ran (the first is the warm-up, compilation and loader start-up
    included).
    """

    def __init__(self, synchronize: Callable[[], None] | None = None, warmup: int = 1,
                 estimate_iterations: int = 10, estimate_seconds: float = 20.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.synchronize = synchronize
        self.warmup = warmup
        self.estimate_iterations = estimate_iterations
        self.estimate_seconds = estimate_seconds
        self.clock = clock
        self.iteration_seconds: list[float] = []
        self.data_wait_seconds: list[float] = []
        self._mark = clock()
        self._paused = 0.0
        self._waited = 0.0
        self._window_start = 0
        self._estimate: tuple[float, float] | None = None
        self._estimate_given = False

    @classmethod
    def for_device(cls, device: torch.device) -> RunTiming:
        """Timing of a run on ``device`` (waits for an accelerator once, when the estimate is made)."""
        if device.type == "cpu":
            return cls()
        return cls(synchronize=lambda: torch.accelerator.synchronize(device))

    def start(self) -> None:
        """Start the first iteration's clock (just before the loop)."""
        self._mark, self._paused, self._waited = self.clock(), 0.0, 0.0

    def data_wait(self) -> contextlib.AbstractContextManager[None]:
        """Time inside the block counts as waiting for data."""
        return self._counted("_waited")

    def paused(self) -> contextlib.AbstractContextManager[None]:
        """Time inside the block (validation, checkpoints) is not part of the iteration."""
        return self._counted("_paused")

    @contextlib.contextmanager
    def _counted(self, total: str) -> Iterator[None]:
        """Add the seconds spent inside the block to the attribute ``total``."""
        start = self.clock()
        try:
            yield
        finally:
            setattr(self, total, getattr(self, total) + self.clock() - start)

    def _measured(self) -> tuple[list[float], list[float]]:
        return self.iteration_seconds[self.warmup:], self.data_wait_seconds[self.warmup:]

    def iteration_done(self) -> None:
        """Record the iteration that just ended."""
        measured, _ = self._measured()
        elapsed = self.clock() - self._mark - self._paused
        completes = self._estimate is None and len(self.iteration_seconds) >= self.warmup and (
            len(measured) + 1 >= self.estimate_iterations or sum(measured) + elapsed >= self.estimate_seconds)
        if completes and self.synchronize is not None:
            self.synchronize()  # once per run: the queued device work belongs to the measurement
            elapsed = self.clock() - self._mark - self._paused
        self.iteration_seconds.append(elapsed)
        self.data_wait_seconds.append(self._waited)
        self._mark, self._paused, self._waited = self.clock(), 0.0, 0.0
        if completes:
            measured, waited = self._measured()
            self._estimate = (sum(measured) / len(measured), sum(waited) / max(sum(measured), 1e-12))

    @property
    def seconds_per_iteration(self) -> float | None:
        """The measured seconds per iteration once the estimate is ready."""
        return self._estimate[0] if self._estimate else None

    def estimate_line(self, remaining: int, now: datetime.datetime | None = None) -> str | None:
        """The one line with the expected duration of the ``remaining`` iterations, the first time
        the measurement is complete; None before and after."""
        if self._estimate is None or self._estimate_given:
            return None
        self._estimate_given = True
        per_iteration, wait = self._estimate
        seconds = per_iteration * remaining
        now = now or datetime.datetime.now()
        return (f"[tufl] {per_iteration:.3g} s/iteration (data wait {100 * min(wait, 1.0):.0f} %): about "
                f"{format_duration(seconds)} for the remaining {remaining:,} iterations (finishing around "
                f"{finish_time(now, seconds)}; validation and checkpoints not included)")

    def window(self) -> dict[str, float]:
        """``s_per_iter`` and ``data_wait`` (fraction of the time) of the iterations since the last call."""
        times = self.iteration_seconds[self._window_start:]
        waits = self.data_wait_seconds[self._window_start:]
        self._window_start = len(self.iteration_seconds)
        if not times:
            return {}
        total = sum(times)
        return {"s_per_iter": round(total / len(times), 4), "data_wait": round(sum(waits) / max(total, 1e-12), 4)}
