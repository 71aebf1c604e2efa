"""Map a picklable function over chunks of sample indices, in a process pool, with progress."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from typing import TypeVar

from tufl.runtime.progress import progress_bar

T = TypeVar("T")


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
        with multiprocessing.get_context().Pool(min(num_workers, len(chunks))) as pool:
            for results in pool.imap(fn, chunks):
                bar.update(len(results))
                yield from results
