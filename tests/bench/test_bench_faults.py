"""The parts of the fault-injection check (the whole check: `tufl benchmark faults`, docs/benchmarks.md)."""

from __future__ import annotations

import torch

from tufl.bench.faults import _damage_report, compare_states
from tufl.runtime import checkpoint_files as ckpt


def _state(weight: float, momentum: float, iteration: int = 4) -> dict:
    return {"iteration": iteration, "model": {"w": torch.full((3,), weight)},
            "losses": {"t": torch.tensor([0.8, 0.9])},
            "optimizer": {"state": {0: {"momentum_buffer": torch.full((3,), momentum)}}},
            "data": {"source_batches": iteration}}


def test_compare_states_names_every_part_that_differs():
    assert compare_states(_state(1.0, 0.5), _state(1.0, 0.5)) == []
    nudged = _state(1.0, 0.5)
    nudged["model"]["w"][1] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))  # one ulp
    assert compare_states(_state(1.0, 0.5), nudged) == ["model.w"]
    assert compare_states(_state(1.0, 0.5), _state(1.0, 0.25, iteration=5)) == [
        "optimizer.0.momentum_buffer", "iteration", "data"]


def test_damage_report_counts_unreadable_checkpoints_and_leftover_temporary_files(tmp_path):
    last = tmp_path / ckpt.LAST_NAME
    ckpt.save_checkpoint(last, {"iteration": 2}, keep=2)
    ckpt.save_checkpoint(last, {"iteration": 4}, keep=2)
    assert _damage_report(tmp_path) == {"unreadable_checkpoints": 0, "temporary_files": 0}
    last.write_bytes(last.read_bytes()[:50])
    (tmp_path / f".{ckpt.LAST_NAME}.x1y2.tmp").write_bytes(b"half")
    assert _damage_report(tmp_path) == {"unreadable_checkpoints": 1, "temporary_files": 1}
    assert _damage_report(tmp_path, {last.stat().st_ino})["unreadable_checkpoints"] == 0  # planted by the check
