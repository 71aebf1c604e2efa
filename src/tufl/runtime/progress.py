"""Progress bars that suit where the output goes.

On a terminal, :func:`progress_bar` is a tqdm bar. When the output is redirected (a log
file, a cluster job's output, a pipe) a redrawn bar leaves carriage returns and escape
codes in the file, so there it writes plain lines instead: one at most every
``interval`` seconds (30 by default) and one when it ends, each with the count, the
rate, the time left and the bar's postfix values.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm import tqdm

PLAIN_INTERVAL = 30.0


def output_is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default: standard error, where bars go) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 disable: bool = False, initial: int = 0, **tqdm_options: Any) -> Any:
    """A tqdm bar on a terminal (``tqdm_options`` are passed on), a :class:`PlainProgress` elsewhere."""
    if disable or output_is_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, initial=initial, **tqdm_options)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, initial=initial)


def say(line: str, file: IO[str] | None = None) -> None:
    """Print a line beside a running bar (``tqdm.write`` on a terminal, a plain print elsewhere)."""
    tqdm.write(line, file=file)


class PlainProgress:
    """The part of tqdm's interface tufl uses, writing plain lines (see the module docstring)."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, interval: float = PLAIN_INTERVAL,
                 file: IO[str] | None = None, clock: Any = time.monotonic) -> None:
        self.iterable, self.desc, self.unit, self.interval = iterable, desc, unit, interval
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n = self.initial = initial
        self.file, self.clock = file, clock
        self.start = self.last = clock()
        self.postfix: dict[str, Any] = {}
        self.closed = False
        self.shown = initial  # the count of the last line written

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None, "PlainProgress without an iterable is updated by hand"
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._line(now)

    def set_postfix(self, values: dict[str, Any] | None = None, refresh: bool = False, **more: Any) -> None:
        self.postfix = {**(values or {}), **more}

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.n != self.shown:
                self._line(self.clock(), final=True)

    def _line(self, now: float, final: bool = False) -> None:
        self.shown = self.n
        elapsed = max(now - self.start, 1e-9)
        rate = (self.n - self.initial) / elapsed
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        left = ""
        if self.total and rate > 0 and self.n < self.total and not final:
            left = f", {_duration((self.total - self.n) / rate)} left"
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {count}{share}, {rate:.3g} {self.unit}/s{left}{extra}",
              file=self.file or sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
