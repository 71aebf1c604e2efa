"""InfiniteLoader: determinism across workers, resume, rank shards, epoch reshuffles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures import write_cityscapes
from torch.utils.data import Dataset

from tufl.data import InfiniteLoader, TargetPairs, TargetViewConfig, build_dataset
from tufl.data.loader import epoch_shard, sample_seed


class KeyEcho(Dataset):
    """Returns its key, to observe exactly which (index, seed) each batch holds."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key):
        index, seed = key
        return {"index": index, "seed": torch.tensor(seed % (2**62))}


@pytest.fixture(scope="module")
def target_pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    write_cityscapes(root, splits=("train",), cities=("aachen", "bochum"), n_per_city=3, size=(24, 16),
                     labelled_splits=())
    base = build_dataset("cityscapes", str(root), "train", 19)
    return TargetPairs(base, TargetViewConfig(crop_size=(16, 16), scale_range=(1.0, 1.4)))


def _take(loader: InfiniteLoader, count: int) -> list[dict]:
    return [next(loader) for _ in range(count)]


def _same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) if isinstance(x[k], torch.Tensor) else x[k] == y[k]
                                      for k in x) for x, y in zip(a, b)
    )


def test_same_seed_same_stream_and_workers_do_not_matter(target_pairs):
    serial = _take(InfiniteLoader(target_pairs, batch_size=2, seed=3), 7)  # 3 batches/epoch: crosses epochs
    repeat = _take(InfiniteLoader(target_pairs, batch_size=2, seed=3), 7)
    with InfiniteLoader(target_pairs, batch_size=2, seed=3, num_workers=2) as loader:
        parallel = _take(loader, 7)
    assert _same(serial, repeat) and _same(serial, parallel)
    other = _take(InfiniteLoader(target_pairs, batch_size=2, seed=4), 7)
    assert not _same(serial, other)


def test_each_position_gets_its_own_augmentation(target_pairs):
    batches = _take(InfiniteLoader(target_pairs, batch_size=2, seed=0), 6)  # two epochs of 6 images
    thetas = torch.cat([b["theta"] for b in batches])
    assert len({tuple(t.flatten().tolist()) for t in thetas}) == len(thetas)
    indices = torch.cat([b["index"] for b in batches]).tolist()
    first, second = indices[:6], indices[6:]
    assert sorted(first) == sorted(second) == list(range(6))  # every image once per epoch
    assert first != second  # reshuffled


def test_resume_from_start_batch_continues_the_stream(target_pairs):
    loader = InfiniteLoader(target_pairs, batch_size=2, seed=5)
    full = _take(loader, 8)
    assert loader.state_dict() == {"seed": 5, "batch_size": 2, "rank": 0, "world_size": 1, "batches_consumed": 8}
    resumed = InfiniteLoader(target_pairs, batch_size=2, seed=5, start_batch=4, num_workers=2)
    with resumed:
        assert _same(_take(resumed, 4), full[4:])
    assert resumed.batches_consumed == 8 and resumed.epoch == 2


def test_close_then_next_continues_at_the_same_position(target_pairs):
    loader = InfiniteLoader(target_pairs, batch_size=2, seed=2, num_workers=2)
    head = _take(loader, 2)
    loader.close()
    tail = _take(loader, 2)
    loader.close()
    assert _same(head + tail, _take(InfiniteLoader(target_pairs, batch_size=2, seed=2), 4))


def test_rank_shards_are_disjoint_equal_and_keys_follow_positions():
    dataset = KeyEcho(11)
    per_rank = []
    for rank in range(2):
        loader = InfiniteLoader(dataset, batch_size=2, seed=9, rank=rank, world_size=2)
        assert loader.batches_per_epoch == 2  # 11 // 2 = 5 per rank -> 2 full batches
        per_rank.append(_take(loader, 2))
    shards = [torch.cat([b["index"] for b in batches]).tolist() for batches in per_rank]
    assert len(shards[0]) == len(shards[1]) == 4
    assert not set(shards[0]) & set(shards[1])
    # Independent expectation: the epoch-0 permutation dealt to ranks in turn.
    order = np.random.default_rng([9, 0]).permutation(11)
    assert shards[0] == order[[0, 2, 4, 6]].tolist() and shards[1] == order[[1, 3, 5, 7]].tolist()
    seeds = torch.cat([b["seed"] for b in per_rank[1]]).tolist()
    assert seeds == [sample_seed(9, 0, p) % (2**62) for p in (1, 3, 5, 7)]


def test_epoch_shard_positions_and_argument_checks():
    indices, positions = epoch_shard(7, seed=1, epoch=3, rank=2, world_size=3)
    assert positions.tolist() == [2, 5]
    assert indices.tolist() == np.random.default_rng([1, 3]).permutation(7)[[2, 5]].tolist()
    with pytest.raises(ValueError, match="too small"):
        InfiniteLoader(KeyEcho(3), batch_size=2, seed=0, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        InfiniteLoader(KeyEcho(8), batch_size=2, seed=0, rank=2, world_size=2)


_WORKER_SIGNAL_SCRIPT = r"""
import os, sys, torch
from torch.utils.data import Dataset
from tufl.data.loader import InfiniteLoader

class Keys(Dataset):
    def __len__(self):
        return 8
    def __getitem__(self, key):
        return torch.tensor(key[0])

loader = InfiniteLoader(Keys(), 2, seed=0, num_workers=2)
for _ in range(2):  # one batch from each worker: both have run their init
    next(loader)
print(" ".join(str(w.pid) for w in loader._iterator._workers), flush=True)
sys.stdin.readline()
next(loader)
print("alive", flush=True)
# exits without closing the loader: multiprocessing must still end the workers
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "sigwaitinfo"), reason="needs sigwaitinfo (POSIX)")
def test_workers_ignore_foreign_stop_signals_but_not_their_parent(tmp_path):
    """A SIGTERM from another process (a cluster signalling the job) leaves data workers alive;
    the parent's own terminate at exit still ends them, so the process exits (it used to hang)."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _WORKER_SIGNAL_SCRIPT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGUSR1)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "alive"
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
