"""Progress output: tqdm bars on a terminal, plain lines (at most one per interval, one at the end)
elsewhere; checked on a fake clock."""

from __future__ import annotations

import io
import sys

from tqdm import tqdm

from tufl.runtime.progress import PlainProgress, progress_bar, say


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _bar(clock: Clock, out: io.StringIO, **options) -> PlainProgress:
    return PlainProgress(desc="prepare", unit="sample", interval=10.0, file=out, clock=clock, **options)


def test_a_line_at_most_every_interval_and_one_at_the_end():
    clock, out = Clock(), io.StringIO()
    bar = _bar(clock, out, total=100)
    clock.now = 9.0
    bar.update(5)
    assert out.getvalue() == ""  # within the interval: nothing yet
    clock.now = 10.0
    bar.update(15)  # 20 in 10 s: 2/s, 80 left: 40 s
    assert out.getvalue() == "prepare: 20/100 (20 %), 2 sample/s, 40 s left\n"
    clock.now = 15.0
    bar.update(10)
    clock.now = 16.0
    bar.close()  # 30 in 16 s: 1.875/s; a bar that ended says no time left
    bar.close()
    assert out.getvalue().splitlines()[1:] == ["prepare: 30/100 (30 %), 1.88 sample/s"]


def test_the_end_line_is_not_repeated_and_long_waits_read_in_minutes_and_hours():
    clock, out = Clock(), io.StringIO()
    bar = _bar(clock, out, total=10000)
    clock.now = 10.0
    bar.update(10)  # 1/s, 9990 s left
    clock.now = 20.0
    bar.update(990)  # 50/s, 9000 left: 180 s
    bar.close()  # nothing new since the last line
    assert out.getvalue().splitlines() == ["prepare: 10/10000 (0 %), 1 sample/s, 2.8 h left",
                                           "prepare: 1000/10000 (10 %), 50 sample/s, 3 min left"]


def test_a_resumed_count_and_the_postfix_values():
    clock, out = Clock(), io.StringIO()
    bar = _bar(clock, out, total=10, initial=6)  # resumed at 6: the rate counts this run's 4
    bar.set_postfix({"loss": "1.5"}, refresh=False, lr="0.01")
    clock.now = 8.0
    bar.update(4)
    bar.close()
    assert out.getvalue() == "prepare: 10/10 (100 %), 0.5 sample/s, loss=1.5, lr=0.01\n"


def test_iterating_yields_every_item_and_ends_with_a_line():
    clock, out = Clock(), io.StringIO()
    items = []
    for item in _bar(clock, out, iterable=["a", "b", "c"]):
        clock.now += 1.0
        items.append(item)
    assert items == ["a", "b", "c"] and out.getvalue() == "prepare: 3/3 (100 %), 1 sample/s\n"
    out = io.StringIO()
    clock.now = 0.0
    assert list(PlainProgress((i for i in range(4)), desc="scan", file=out, clock=clock)) == [0, 1, 2, 3]
    assert out.getvalue().startswith("scan: 4, ")  # no length: no total, no share, no time left


def test_progress_bar_is_plain_unless_the_output_is_a_terminal(monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = progress_bar(total=3, desc="x", dynamic_ncols=True, mininterval=1.0, bar_format="{n}")  # tqdm options
    assert isinstance(bar, PlainProgress)
    bar.update(3)
    bar.close()
    assert "\r" not in sys.stderr.getvalue() and sys.stderr.getvalue().startswith("x: 3/3 (100 %)")
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = progress_bar(total=3, desc="x", mininterval=1.0)
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress_bar(total=3, desc="x", disable=True) as bar:
        bar.update(3)
    assert sys.stderr.getvalue() == ""
    say("[tufl] a line beside the bar")
    assert capsys.readouterr().out == "[tufl] a line beside the bar\n"
