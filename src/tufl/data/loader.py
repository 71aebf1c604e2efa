"""Deterministic, resumable infinite batches for training; plain sharded batches for evaluation.

:class:`InfiniteLoader` walks epochs forever. Epoch ``e`` is the permutation
``default_rng([seed, e]).permutation(n)``, truncated to a multiple of
``world_size`` and dealt to ranks in turn (rank ``r`` gets positions ``r, r + W,
...``), so shards are disjoint and of equal length. Each rank cuts its shard into
full batches (the rest is dropped). The sample at global position ``p`` of epoch
``e`` gets the key ``(index, seed_of(seed, e, p))``; the stream is therefore the
same for any number of workers, and ``start_batch=k`` resumes at batch ``k``
exactly. Another key stream with the same constructor arguments can replace
:class:`KeyedBatches` (``key_batches=``; rare-class sampling,
:mod:`tufl.data.rare_class`), under the same rules.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tufl.data.samples import SampleKey


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """Seed of the augmentation draws of the sample at ``position`` of ``epoch``."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1, np.uint64)[0])


def epoch_shard(size: int, seed: int, epoch: int, rank: int, world_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, global positions)`` of one rank's share of an epoch's permutation."""
    order = np.random.default_rng([seed, epoch]).permutation(size)
    positions = np.arange(rank, (size // world_size) * world_size, world_size)
    return order[positions], positions


def full_batches_per_epoch(size: int, batch_size: int, world_size: int) -> int:
    """Full batches per rank in an epoch of ``size`` samples; ValueError when there is none."""
    batches = (size // world_size) // batch_size
    if batches == 0:
        raise ValueError(
            f"dataset of {size} samples is too small for batch_size {batch_size} "
            f"on {world_size} rank(s): not one full batch per epoch"
        )
    return batches


def check_rank(rank: int, world_size: int) -> None:
    """ValueError unless ``0 <= rank < world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


@dataclass(eq=False)
class KeyStream:
    """What every stream of key batches is built from (see :data:`KeyBatchesFactory`);
    ``batches_per_epoch`` counts the full batches of a shuffled epoch on one rank."""

    size: int
    batch_size: int
    seed: int
    rank: int
    world_size: int
    start_batch: int

    def __post_init__(self) -> None:
        self.batches_per_epoch = full_batches_per_epoch(self.size, self.batch_size, self.world_size)


class KeyedBatches(KeyStream):
    """Infinite iterable of batches of sample keys, starting at batch ``start_batch``."""

    def __iter__(self) -> Iterator[list[SampleKey]]:
        batch = self.start_batch
        while True:
            epoch, first = divmod(batch, self.batches_per_epoch)
            indices, positions = epoch_shard(self.size, self.seed, epoch, self.rank, self.world_size)
            for b in range(first, self.batches_per_epoch):
                chunk = slice(b * self.batch_size, (b + 1) * self.batch_size)
                yield [
                    (int(i), sample_seed(self.seed, epoch, int(p)))
                    for i, p in zip(indices[chunk], positions[chunk])
                ]
            batch = (epoch + 1) * self.batches_per_epoch


_STOP_SIGNALS = ("SIGTERM", "SIGUSR1")


def _end_on_parent_signal(numbers: set[int], parent: int) -> None:
    """Thread body of a worker: take the blocked stop signals; end the worker when its parent
    sent one (DataLoader shut-down, or multiprocessing ending its children at exit)."""
    while True:
        info = signal.sigwaitinfo(numbers)
        if info.si_pid == parent or os.getppid() != parent:
            os._exit(0)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """Data workers ignore SIGTERM and SIGUSR1 from anyone but their parent.

    A cluster that signals every process of the job must not kill the workers under
    the training process, which stops cleanly and then ends them; but the parent's own
    ``terminate()`` (DataLoader shut-down, or multiprocessing ending daemonic children
    when the process exits) must still end them, or the parent waits forever. The
    signals are blocked and taken by a thread that reads the sender
    (``sigwaitinfo``); where that is unavailable they are left at their defaults.
    """
    if not (hasattr(signal, "sigwaitinfo") and hasattr(signal, "pthread_sigmask")):
        return
    numbers = {getattr(signal, name) for name in _STOP_SIGNALS if hasattr(signal, name)}
    signal.pthread_sigmask(signal.SIG_BLOCK, numbers)  # threads started later inherit the mask
    threading.Thread(target=_end_on_parent_signal, args=(numbers, os.getppid()), daemon=True,
                     name="tufl-worker-signals").start()


def seed_worker(worker_id: int, seed: int, rank: int) -> None:
    """Seed Python, NumPy and torch global generators of a data worker (library randomness);
    the worker ignores the stop signals (:func:`ignore_stop_signals`)."""
    ignore_stop_signals()
    state = np.random.SeedSequence([seed, rank, worker_id]).generate_state(2, np.uint32)
    random.seed(int(state[0]))
    np.random.seed(int(state[0]))
    torch.manual_seed(int(state[1]))


KeyBatchesFactory = Callable[[int, int, int, int, int, int], Iterable[list[Any]]]
"""``(size, batch_size, seed, rank, world_size, start_batch) ->`` infinite batches of keys, with
a ``batches_per_epoch`` attribute: :class:`KeyedBatches` or another key stream."""


class InfiniteLoader:
    """Infinite iterator of collated batches from a keyed dataset (see module docstring).

    ``batches_consumed`` counts the batches handed out, including ``start_batch``;
    ``state_dict()`` records it, and a loader rebuilt with
    ``start_batch=state["batches_consumed"]`` continues the same stream.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        start_batch: int = 0,
        pin_memory: bool = False,
        key_batches: KeyBatchesFactory = KeyedBatches,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        check_rank(rank, world_size)
        if num_workers < 0 or start_batch < 0:
            raise ValueError(f"num_workers and start_batch must be >= 0, got {num_workers}, {start_batch}")
        self.dataset = dataset
        self.seed = seed
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.batches_consumed = start_batch
        self.key_batches = key_batches
        self._batches = self._key_stream()  # validates the sizes now rather than at the first batch
        self._iterator: Iterator[Any] | None = None

    def _key_stream(self) -> Iterable[list[Any]]:
        """The key batches from the next batch on."""
        return self.key_batches(
            len(self.dataset), self.batch_size, self.seed, self.rank, self.world_size, self.batches_consumed
        )

    def _start(self) -> Iterator[Any]:
        self._batches = self._key_stream()
        loader = DataLoader(
            self.dataset,
            batch_sampler=self._batches,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            worker_init_fn=partial(seed_worker, seed=self.seed, rank=self.rank) if self.num_workers else None,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )
        return iter(loader)

    @property
    def batches_per_epoch(self) -> int:
        """Full batches per epoch on this rank."""
        return self._batches.batches_per_epoch  # type: ignore[attr-defined]

    @property
    def epoch(self) -> int:
        """Epoch of the next batch."""
        return self.batches_consumed // self.batches_per_epoch

    def __iter__(self) -> InfiniteLoader:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._start()
        batch = next(self._iterator)
        self.batches_consumed += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        """Position of the stream (and what it depends on) for checkpoints."""
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "rank": self.rank,
            "world_size": self.world_size,
            "batches_consumed": self.batches_consumed,
        }

    def close(self) -> None:
        """Stop the worker processes; a later ``next`` starts new ones at the same position.

        The workers are ended now, not when the iterator is garbage-collected (a traceback
        may hold it until the process exits)."""
        iterator, self._iterator = self._iterator, None
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def __enter__(self) -> InfiniteLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def eval_loader(
    dataset: Dataset,
    batch_size: int = 1,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    """Finite loader over this rank's samples ``rank, rank + world_size, ...`` in order."""
    check_rank(rank, world_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=list(range(rank, len(dataset), world_size)),
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=ignore_stop_signals if num_workers else None,
    )
