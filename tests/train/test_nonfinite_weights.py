"""Non-finite weights are never checkpointed: the save is refused naming the run and the
iteration, the earlier checkpoints stay, and the command exits with status 1."""

from __future__ import annotations

import json

import pytest
import torch

import runs
from tufl.cli import main
from tufl.runtime import checkpoint_files as ckpt
from tufl.runtime.distributed import DistContext
from tufl.train.run_state import NonFiniteWeightsError, nonfinite_tensors, save_run_state
from tufl.train.step import OptimizerStep


def test_nonfinite_tensors_names_float_tensors_with_nan_or_inf():
    state = {"a": torch.ones(3), "b": torch.tensor([1.0, float("inf")]), "c": torch.tensor([float("nan")]),
             "steps": torch.tensor(4), "note": "text"}
    assert nonfinite_tensors(state) == ["b", "c"]
    assert nonfinite_tensors({"a": torch.zeros(2, dtype=torch.float16)}) == []


def test_a_state_with_nonfinite_weights_is_not_saved(tmp_path):
    last = tmp_path / ckpt.LAST_NAME
    save_run_state(last, {"iteration": 2, "model": {"w": torch.ones(2)}}, DistContext(), keep=2)
    with pytest.raises(NonFiniteWeightsError) as raised:
        save_run_state(last, {"iteration": 3, "model": {"w": torch.tensor([1.0, float("nan")])}}, DistContext(), keep=2)
    message = str(raised.value)
    assert message.startswith(f"the run in {tmp_path} has non-finite weights (NaN or inf) at iteration 3: w. "
                              "Not writing checkpoint_last.pt; the checkpoints already written are intact "
                              "(checkpoint_last.pt).")
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.LAST_NAME]
    assert ckpt.load_checkpoint(last)["iteration"] == 2


def test_a_run_whose_weights_become_nan_fails_and_keeps_its_finite_checkpoints(scene_info, tmp_path, monkeypatch,
                                                                               capsys):
    run = tmp_path / "run"
    tree = runs.run_tree(scene_info, run, "source_only", 4, data={"val": None}, train={"checkpoint_every": 2})
    config = runs.write_yaml(tree, tmp_path / "c.yaml")
    real_step, calls = OptimizerStep.__call__, []

    def poisoning_step(self: OptimizerStep, finite: torch.Tensor) -> torch.Tensor | None:
        norm = real_step(self, finite)
        calls.append(1)
        if len(calls) == 3:  # the update of iteration 3 writes NaN into a weight
            with torch.no_grad():
                self.params[0].view(-1)[0] = float("nan")
        return norm

    monkeypatch.setattr(OptimizerStep, "__call__", poisoning_step)
    assert main(["train", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.strip()]
    assert line.startswith(f"error: the run in {run} has non-finite weights (NaN or inf) at iteration 4: ")
    assert "Not writing checkpoint_last.pt; the checkpoints already written are intact (checkpoint_last.pt)" in line
    state = ckpt.load_checkpoint(run / ckpt.LAST_NAME)
    assert state["iteration"] == 2 and not nonfinite_tensors(state["model"])
    assert [p.name for p in run.glob("checkpoint*")] == [ckpt.LAST_NAME]
    assert json.loads((run / "run_info.json").read_text())["last_iteration"] == 4
