"""Process pools of data preparation and class indexing (``tufl.data.parallel.worker_pool``)
started while a run catches its stop signals: the workers must die of ``Pool.terminate``."""

from __future__ import annotations

import os
import signal
import threading

from tufl.data.parallel import map_index_chunks, worker_pool


def _worker_state(_: int) -> tuple[bool, bool, set[int]]:
    return (signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL,
            set(signal.pthread_sigmask(signal.SIG_BLOCK, [])))


class _Squares:
    def __call__(self, chunk: range) -> list[int]:
        return [k * k for k in chunk]


def test_workers_start_with_default_signals_and_unblocked_and_the_parent_keeps_its_handlers():
    received: list[int] = []
    handler = lambda number, frame: received.append(number)  # noqa: E731 (a run's stop handler)
    before = {n: signal.signal(n, handler) for n in (signal.SIGTERM, signal.SIGUSR1)}
    mask = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))
    try:
        with worker_pool(2) as pool:
            states = pool.map(_worker_state, range(4))
            os.kill(os.getpid(), signal.SIGUSR1)  # the parent still handles its signals
        # a worker that inherited the handler would ignore Pool.terminate's SIGTERM; these die of it
        assert states == [(True, True, mask)] * 4
        assert signal.getsignal(signal.SIGTERM) is handler and set(signal.pthread_sigmask(signal.SIG_BLOCK, [])) == mask
        assert received == [signal.SIGUSR1]
        assert list(map_index_chunks(_Squares(), 10, 2, "test", progress=False)) == [k * k for k in range(10)]
    finally:
        for number, previous in before.items():
            signal.signal(number, previous)


def test_a_signal_that_arrives_while_the_workers_are_forked_reaches_the_parent_afterwards():
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda number, frame: received.append(number))
    original = signal.pthread_sigmask
    try:
        def block_then_signal(how, numbers):
            old = original(how, numbers)
            if how == signal.SIG_BLOCK and signal.SIGUSR1 in set(numbers):
                # to this thread, which blocks it: pending while the pool forks
                signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
                assert received == []
            return old

        signal.pthread_sigmask = block_then_signal
        try:
            with worker_pool(1) as pool:
                assert pool.map(_Squares(), [range(3)]) == [[0, 1, 4]]
        finally:
            signal.pthread_sigmask = original
        assert received == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)
