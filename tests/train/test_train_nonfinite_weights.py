"""A step that leaves a weight non-finite (a NaN learning rate, an overflowing update) is undone on
the device and counted as skipped; with a sane learning rate the check changes nothing."""

from __future__ import annotations

import pytest
import torch

import runs
from tufl.train import step as step_module
from tufl.train.engine import Trainer
from tufl.train.step import DeviceSnapshot, NonFiniteCounters, OptimizerStep, WeightGuard, finish_step


def _trainer(scene_info, path, mode="stage1", **sections) -> Trainer:
    return Trainer(runs.config(runs.run_tree(scene_info, path, mode, iters=20, **sections)))


def _close(trainer: Trainer) -> None:
    getattr(trainer, "close", lambda: None)()


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Weights, BatchNorm statistics, loss thresholds and the optimiser's state, copied."""
    out = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    out.update({f"objective.{k}": v.clone() for k, v in trainer.objective.state_dict().items()
                if isinstance(v, torch.Tensor)})
    for i, state in enumerate(trainer.optimizer.state.values()):
        out.update({f"optim.{i}.{k}": v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)})
    return out


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _set_base_lr(trainer: Trainer, lr: float) -> None:
    """The schedule multiplies each group's base_lr every step: NaN there is NaN in every step
    (the config refuses optim.lr: .nan, so it is set on the optimiser)."""
    for group in trainer.optimizer.param_groups:
        group["base_lr"] = lr


@pytest.mark.parametrize("fused", [True, False])
def test_a_nan_learning_rate_leaves_the_weights_as_they_started_and_counts(scene_info, tmp_path, fused):
    trainer = _trainer(scene_info, tmp_path / "run", optim={"fused": fused})
    assert trainer.fused is fused
    assert bool(trainer.train_step().finite)  # momentum buffers, thresholds and statistics exist
    trainer.iteration += 1
    before = _state(trainer)
    assert any(k.startswith("optim.") for k in before) and any(k.endswith("running_mean") for k in before)
    _set_base_lr(trainer, float("nan"))
    for _ in range(3):
        log = trainer.train_step()
        assert not bool(log.finite)  # the log window leaves the step out, the EMA teacher too
        trainer.iteration += 1
    _assert_identical(before, _state(trainer))
    assert trainer.counters == {"nonfinite_skipped": 3, "nonfinite_in_row": 3}
    _set_base_lr(trainer, trainer.cfg.optim.lr)
    assert bool(trainer.train_step().finite)  # trains again
    assert trainer.counters == {"nonfinite_skipped": 3, "nonfinite_in_row": 0}
    after = _state(trainer)
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.endswith(".weight"))
    _close(trainer)


@pytest.mark.parametrize("where_path", [False, True])
def test_with_a_sane_learning_rate_the_check_changes_nothing(scene_info, tmp_path, monkeypatch, where_path):
    # where_path: the flag is not read on the host (as on a GPU), so every step goes through torch.where
    if where_path:
        monkeypatch.setattr(step_module, "HOST_READ_DEVICES", ())
    states = []
    for check in (True, False):
        trainer = _trainer(scene_info, tmp_path / str(check), optim={"nesterov": True}, train={"grad_clip": 5.0})
        if not check:
            trainer.update = OptimizerStep(trainer.optimizer, trainer.scaler, list(trainer.model.parameters()),
                                           trainer.cfg.train.grad_clip, check_weights=False)
        for _ in range(3):
            assert bool(trainer.train_step().finite)
            trainer.iteration += 1
        assert trainer.counters == {"nonfinite_skipped": 0, "nonfinite_in_row": 0}
        states.append(_state(trainer))
        _close(trainer)
    _assert_identical(*states)


def _tiny(name: str, fused: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer, OptimizerStep]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    params = list(model.parameters())
    if name == "sgd":
        optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4, fused=fused or None)
    else:
        optimizer = torch.optim.AdamW(params, lr=0.1, fused=fused or None)
    update = OptimizerStep(optimizer, torch.amp.GradScaler("cpu", enabled=False), params, grad_clip=None)
    return model, optimizer, update


def _backward(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad(set_to_none=True)
    (model(torch.randn(6, 4)).square().mean() * 1e3).backward()  # gradients large enough to overflow


def _copy(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return [t.detach().clone() for t in [*model.parameters(), *state]]


# (optimiser, fused, learning rate): NaN and inf for both; 1e38 is finite, but SGD's update with
# large gradients overflows (AdamW's update is about lr in size, and foreach AdamW refuses it).
BAD_STEPS = [(name, fused, lr) for name in ("sgd", "adamw") for fused in (True, False)
             for lr in (float("nan"), float("inf"))] + [("sgd", True, 1e38), ("sgd", False, 1e38)]


@pytest.mark.parametrize("where_path", [False, True])
@pytest.mark.parametrize(("name", "fused", "bad_lr"), BAD_STEPS)
def test_the_guard_undoes_the_step_and_the_state_it_made(monkeypatch, name, fused, bad_lr, where_path):
    if where_path:
        monkeypatch.setattr(step_module, "HOST_READ_DEVICES", ())
    model, optimizer, update = _tiny(name, fused)
    start = [p.detach().clone() for p in model.parameters()]
    for group in optimizer.param_groups:
        group["lr"] = bad_lr
    for _ in range(2):  # the first step creates the optimiser's state: it goes back to zeros
        _backward(model, optimizer)
        update(torch.tensor(True))
        assert not bool(update.weights_finite)
        assert all(torch.equal(a, p) for a, p in zip(start, model.parameters()))
        for state in optimizer.state.values():
            assert all(not v.any() for v in state.values() if isinstance(v, torch.Tensor))
    for group in optimizer.param_groups:
        group["lr"] = 0.1
    for _ in range(2):  # then trains as a fresh optimiser would
        _backward(model, optimizer)
        update(torch.tensor(True))
        assert bool(update.weights_finite)
    kept = _copy(model, optimizer)
    for group in optimizer.param_groups:
        group["lr"] = bad_lr
    _backward(model, optimizer)
    update(torch.tensor(True))  # a bad step after good ones: weights and state as they were
    assert not bool(update.weights_finite)
    assert all(torch.equal(a, b) for a, b in zip(kept, _copy(model, optimizer)))


def test_a_skipped_step_passes_the_check():
    model, optimizer, update = _tiny("sgd", fused=True)
    for group in optimizer.param_groups:
        group["lr"] = float("nan")
    _backward(model, optimizer)
    start = _copy(model, optimizer)
    update(torch.tensor(False))  # skipped through found_inf: nothing changed, nothing to undo
    assert bool(update.weights_finite)
    assert all(torch.equal(a, b) for a, b in zip(start, _copy(model, optimizer)))


def test_finish_step_counts_an_undone_step_and_restores_the_snapshot():
    model, optimizer, update = _tiny("sgd", fused=True)
    statistic = torch.zeros(3)
    snapshot = DeviceSnapshot(lambda: [statistic])
    counters = NonFiniteCounters(torch.device("cpu"))
    for lr, expected in ((0.1, True), (float("nan"), False), (0.1, True)):
        for group in optimizer.param_groups:
            group["lr"] = lr
        snapshot.save()
        statistic.add_(1.0)  # what a forward pass changes (BatchNorm statistics)
        _backward(model, optimizer)
        finite, norm = finish_step(torch.tensor(True), update, snapshot, counters)
        assert bool(finite) is expected and norm is None
    assert torch.equal(statistic, torch.full((3,), 2.0))  # the undone step's change was put back
    assert counters.read() == {"nonfinite_skipped": 1, "nonfinite_in_row": 0}
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_guard_keeps_its_buffers_between_steps():
    model, optimizer, update = _tiny("sgd", fused=True)
    guard = update.guard
    assert isinstance(guard, WeightGuard)
    _backward(model, optimizer)
    update(torch.tensor(True))
    buffers = [c.data_ptr() for _, copies in guard.saved for c in copies]
    _backward(model, optimizer)
    update(torch.tensor(True))
    assert [c.data_ptr() for _, copies in guard.saved for c in copies] == buffers  # no allocation per step
