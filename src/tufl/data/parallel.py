"""Map a picklable function over chunks of sample indices, in a process pool, with progress."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.pool import Pool
from typing import TypeVar

from tufl.runtime.progress import progress_bar

T = TypeVar("T")


def _default_signals(numbers: list[int], mask: set[int]) -> None:
    """A pool worker's start: the signals its parent handles in Python (a run's stop signals)
    act as by default, then the mask its parent had, so one held back during the fork arrives."""
    for number in numbers:
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


@contextmanager
def worker_pool(processes: int) -> Iterator[Pool]:
    """A ``multiprocessing`` pool whose workers die of SIGTERM and the other signals this
    process handles in Python.

    A worker forked while a run catches SIGTERM inherits the run's handler, and a SIGTERM
    from ``Pool.terminate`` that reaches a worker before its interpreter finished starting is
    dropped (CPython clears pending signals after a fork): the worker then waits for work
    forever and the run with it. So those signals are blocked around the fork and the
    workers start with their default action before unblocking them.
    """
    handled = [n for n in signal.valid_signals() if callable(signal.getsignal(n))]
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, handled) if handled else set()
    try:
        pool = multiprocessing.get_context().Pool(processes, initializer=_default_signals,
                                                  initargs=(handled, mask))
    finally:
        if handled:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    with pool:
        yield pool


def index_chunks(size: int, count: int) -> list[range]:
    """``range(size)`` cut into at most ``count`` consecutive chunks of near-equal length."""
    step = max(1, -(-size // max(1, count)))
    return [range(start, min(start + step, size)) for start in range(0, size, step)]


def map_index_chunks(
    fn: Callable[[range], list[T]], size: int, num_workers: int, desc: str, progress: bool = True
) -> Iterator[T]:
    """Yield ``fn`` results for indices ``0..size-1`` in order.

    ``fn`` takes a ``range`` and returns one result per index; with ``num_workers``
    > 1 it runs in a ``multiprocessing`` pool (so it must be picklable, e.g. an
    instance of a module-level class holding the dataset).
    """
    chunks = index_chunks(size, max(1, num_workers) * 8)
    with progress_bar(total=size, desc=desc, unit="img", disable=not progress) as bar:
        if num_workers <= 1:
            for chunk in chunks:
                results = fn(chunk)
                bar.update(len(results))
                yield from results
            return
        with worker_pool(min(num_workers, len(chunks))) as pool:
            for results in pool.imap(fn, chunks):
                bar.update(len(results))
                yield from results
