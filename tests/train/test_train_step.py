"""The training step without host reads: non-finite steps dropped on the device, fused SGD,
the non-finite limit checked at log lines, torch.compile, and the run's timing and estimate."""

from __future__ import annotations

import datetime
import functools
import os
import time

import pytest
import torch

import runs
from tufl.runtime import checkpoint_files as ckpt
from tufl.train.engine import NonFiniteLossError, Trainer
from tufl.objective.objective import Objective
from tufl.runtime.run_log import read_metrics
from tufl.train.step import DeviceSnapshot, NonFiniteCounters, OptimizerStep, grads_finite
from tufl.train.timing import RunTiming, finish_time, format_duration


def _trainer(scene_info, tmp_path, mode="stage1", **sections) -> Trainer:
    tree = runs.run_tree(scene_info, tmp_path / mode, mode, iters=20, **sections)
    return Trainer(runs.config(tree))


def _nan_on_calls(monkeypatch, objective_class, calls: set[int]) -> dict[str, int]:
    """Make the loss of the listed forward calls (1-based) NaN."""
    original = objective_class.forward
    count = {"n": 0}

    def forward(self, *args):
        out = original(self, *args)
        count["n"] += 1
        if count["n"] in calls:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(objective_class, "forward", forward)
    return count


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Weights, BatchNorm statistics, loss thresholds and momentum buffers, copied."""
    out = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    out.update({f"loss.{k}": v.clone() for k, v in trainer.objective.state_dict().items()})
    for i, (p, s) in enumerate(trainer.optimizer.state.items()):
        if s.get("momentum_buffer") is not None:
            out[f"momentum.{i}"] = s["momentum_buffer"].clone()
    return out


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_nan_step_leaves_weights_momentum_statistics_and_thresholds_untouched(scene_info, tmp_path, monkeypatch):
    _nan_on_calls(monkeypatch, Objective, {3})
    trainer = _trainer(scene_info, tmp_path)
    assert trainer.fused  # optim.fused: auto, and the CPU has fused SGD
    for _ in range(2):  # momentum buffers exist, thresholds and BatchNorm statistics have moved
        assert bool(trainer.train_step().finite)
        trainer.iteration += 1
    before = _state(trainer)
    assert any(k.startswith("momentum.") for k in before)
    assert any(k.endswith("running_mean") for k in before) and any(k.endswith("thresholds") for k in before)
    assert not torch.all(before["loss.consistency.losses.0.thresholds"] == 0.8)
    log = trainer.train_step()
    assert not bool(log.finite)
    _assert_identical(before, _state(trainer))
    assert trainer.counters == {"nonfinite_skipped": 1, "nonfinite_in_row": 1}
    trainer.iteration += 1
    assert bool(trainer.train_step().finite)  # the next step trains again
    after = _state(trainer)
    assert not torch.equal(after["loss.consistency.losses.0.thresholds"], before["loss.consistency.losses.0.thresholds"])
    assert trainer.counters == {"nonfinite_skipped": 1, "nonfinite_in_row": 0}


def test_fused_and_foreach_sgd_train_alike_after_a_skipped_first_step(scene_info, tmp_path, monkeypatch):
    # torch's fused SGD allocates its momentum buffers uninitialised and fills them in the first
    # step: a first step skipped through found_inf must not leave that garbage behind.
    _nan_on_calls(monkeypatch, Objective, {1, 4})
    trained = []
    for fused in (True, False):
        trainer = _trainer(scene_info, tmp_path / str(fused), mode="source_only",
                           optim={"fused": fused, "nesterov": True}, train={"grad_clip": 5.0})
        assert trainer.fused is fused
        weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        assert not bool(trainer.train_step().finite)
        assert all(torch.equal(weights[k], v) for k, v in trainer.model.state_dict().items())
        for _ in range(2):
            trainer.iteration += 1
            assert bool(trainer.train_step().finite)
        assert trainer.counters == {"nonfinite_skipped": 1, "nonfinite_in_row": 0}
        trained.append(_state(trainer))
    fused, foreach = trained
    assert fused.keys() == foreach.keys()
    for key in fused:
        torch.testing.assert_close(fused[key], foreach[key], rtol=1e-6, atol=1e-7, msg=key)


def test_max_nonfinite_stops_the_run_at_the_next_log_line(scene_info, tmp_path, monkeypatch, capsys):
    # Iterations 2 and 3 are non-finite, 4 is fine again: the limit of 2 in a row is still
    # found at the log line of iteration 4 (the longest run since the last check counts).
    _nan_on_calls(monkeypatch, Objective, {2, 3})
    tree = runs.run_tree(scene_info, tmp_path / "nan", "source_only", iters=8,
                         train={"max_nonfinite": 2, "log_every": 4, "checkpoint_every": 100})
    trainer = Trainer(runs.config(tree))
    expected = (r"2 non-finite losses in a row \(steps skipped for a non-finite loss, gradient or updated "
                r"weight; train.max_nonfinite: 2\) by iteration 4: stopping. Lower optim.lr")
    with pytest.raises(NonFiniteLossError, match=expected):
        trainer.run()
    assert trainer.iteration == 4
    (record,) = read_metrics(tmp_path / "nan", "train")  # the log line is written first
    assert record["iter"] == 4 and record["skipped_nonfinite"] == 2


def test_device_snapshot_restores_only_when_the_flag_is_false():
    a = torch.arange(6.0).view(2, 3)
    b = torch.tensor(7, dtype=torch.int64)
    snapshot = DeviceSnapshot(lambda: [a, b])
    snapshot.save()
    a.add_(1.5)
    b.add_(1)
    snapshot.restore_unless(torch.tensor(True))
    assert torch.equal(a, torch.arange(6.0).view(2, 3) + 1.5) and int(b) == 8
    snapshot.save()
    a.fill_(float("nan"))
    b.zero_()
    snapshot.restore_unless(torch.tensor(False))
    assert torch.equal(a, torch.arange(6.0).view(2, 3) + 1.5) and int(b) == 8


def test_nonfinite_counters_and_gradient_check():
    counters = NonFiniteCounters(torch.device("cpu"))
    for finite in (True, False, False, True, False):
        counters.update(torch.tensor(finite))
    assert counters.read() == {"nonfinite_skipped": 3, "nonfinite_in_row": 1}
    with pytest.raises(NonFiniteLossError, match="2 non-finite losses in a row"):
        counters.check(2, 5)
    counters.check(2, 6)  # the longest run restarts from the current one (1)
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    p.grad, q.grad = torch.ones(3), torch.tensor([1.0, float("inf")])
    assert not bool(grads_finite([p, q], torch.device("cpu")))
    assert torch.equal(p.grad, torch.ones(3))  # checked, not changed
    q.grad = None
    assert bool(grads_finite([p, q], torch.device("cpu")))


def test_timing_estimates_the_run_from_iterations_after_the_warm_up():
    now = [0.0]
    timing = RunTiming(estimate_iterations=3, clock=lambda: now[0])
    timing.start()
    for seconds, wait in ((5.0, 4.0), (2.0, 0.5), (2.0, 0.5), (2.0, 0.5)):  # warm-up, then 3 measured
        with timing.data_wait():
            now[0] += wait
        now[0] += seconds - wait
        with timing.paused():  # a checkpoint: not iteration time
            now[0] += 30.0
        assert timing.estimate_line(100) is None or timing.seconds_per_iteration is not None
        timing.iteration_done()
    assert timing.iteration_seconds == [5.0, 2.0, 2.0, 2.0]
    assert timing.data_wait_seconds == [4.0, 0.5, 0.5, 0.5]
    start = datetime.datetime(2026, 12, 4, 1, 30)
    line = timing.estimate_line(9_996, now=start)
    assert line == ("[tufl] 2 s/iteration (data wait 25 %): about 5 h 33 min for the remaining 9,996 iterations "
                    "(finishing around 07:03; validation and checkpoints not included)")
    assert finish_time(start.replace(hour=21), 2 * 9_996) == "Sat 05 Dec 03:03"  # not today: the date too
    assert timing.estimate_line(10) is None  # once
    assert timing.window() == {"s_per_iter": 2.75, "data_wait": round(5.5 / 11, 4)}
    assert timing.window() == {}
    assert [format_duration(s) for s in (44.6, 600, 3 * 3600, 50 * 3600)] == ["45 s", "10 min", "3 h", "2 d 2 h"]


def test_a_run_prints_its_duration_logs_speed_and_counts_skipped_steps(scene_info, tmp_path, monkeypatch, capsys):
    _nan_on_calls(monkeypatch, Objective, {4})  # isolated: counted, the run goes on
    tree = runs.run_tree(scene_info, tmp_path / "timed", "source_only", iters=5,
                         train={"log_every": 5, "checkpoint_every": 100, "max_nonfinite": 2})
    trainer = Trainer(runs.config(tree))
    trainer.timing.estimate_iterations = 2  # after iterations 2 and 3
    trainer.run()
    printed = capsys.readouterr()
    lines = [line for line in (printed.out + printed.err).splitlines() if "s/iteration" in line]
    assert len(lines) == 1
    assert "for the remaining 2 iterations" in lines[0] and "data wait" in lines[0]
    assert len(trainer.timing.iteration_seconds) == len(trainer.timing.data_wait_seconds) == 5
    assert all(0 <= w <= t for w, t in zip(trainer.timing.data_wait_seconds, trainer.timing.iteration_seconds))
    (record,) = read_metrics(tmp_path / "timed", "train")
    assert 0 <= record["data_wait"] <= 1 and record["s_per_iter"] > 0
    assert record["s_per_iter"] == pytest.approx(sum(trainer.timing.iteration_seconds) / 5, abs=1e-3)
    assert record["skipped_nonfinite"] == 1 and record["loss"] == record["loss"]  # averaged over counted steps
    state = ckpt.load_checkpoint(tmp_path / "timed" / "checkpoint_last.pt")
    assert state["counters"] == {"nonfinite_skipped": 1, "nonfinite_in_row": 0}
    assert all(type(v) is int for v in state["counters"].values())


# Inductor compiles the tiny BiSeNet's forward and backward for minutes on a 2-core CPU (195 s
# measured on a busy one): that case runs only with TUFL_SLOW_TESTS=1. The eager backend still
# traces the model with dynamo and checks the wiring (checkpoints, validation) in seconds.
@pytest.mark.parametrize("backend", [
    "eager",
    pytest.param("inductor", marks=[pytest.mark.slow, pytest.mark.skipif(
        not os.environ.get("TUFL_SLOW_TESTS"), reason="compiling takes minutes on a CPU; set TUFL_SLOW_TESTS=1")]),
])
def test_compiled_training_matches_eager_and_saves_the_plain_module(backend, scene_info, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=backend))
    losses = []
    for compiled in (False, True):
        tree = runs.run_tree(scene_info, tmp_path / str(compiled), "source_only", iters=1,
                             train={"compile": compiled, "checkpoint_every": 100})
        trainer = Trainer(runs.config(tree))
        assert (trainer.train_forward is not trainer.model) is compiled
        start = time.perf_counter()
        losses.append(trainer.train_step())
        if compiled:
            print(f"compiled step: {time.perf_counter() - start:.1f} s")
            trainer.iteration = 1
            trainer.save(trainer.paths.last)
            state = ckpt.load_checkpoint(trainer.paths.last)
            assert state["model"].keys() == trainer.model.state_dict().keys()
            assert not any("_orig_mod" in k for k in state["model"])
    eager, compiled_log = losses
    assert eager.keys == compiled_log.keys
    torch.testing.assert_close(compiled_log.values, eager.values, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["stage1", "stage2"])
def test_a_cuda_step_makes_no_host_synchronisation(mode, scene_info, source_only_run, tmp_path):
    extra = {"model": {"pretrained": str(source_only_run / "checkpoint_last.pt")},
             "experiment": {"device": "cuda"}, "train": {"amp": True, "channels_last": True}}
    if mode == "stage2":
        extra["mix"] = {"p_longtail": 0.0}  # long-tail pasting reads the thresholds on the host
    trainer = _trainer(scene_info, tmp_path, mode=mode, **extra)
    assert trainer.fused
    trainer.train_step()  # warm-up: cuDNN autotuning, allocator, lazy initialisation
    trainer.iteration += 1
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            trainer.train_step()
            trainer.iteration += 1
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.counters["nonfinite_skipped"] == 0


@pytest.mark.parametrize("fused", [True, False])
def test_the_loss_scaler_path_skips_on_our_flag_too(fused):
    # fp16 runs step through GradScaler (CUDA); its CPU twin exercises the same calls here.
    def step(finite: bool, scaler_enabled: bool) -> tuple[torch.Tensor, torch.optim.SGD]:
        p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
        optimizer = torch.optim.SGD([p], lr=0.1, momentum=0.9, fused=fused or None)
        scaler = torch.amp.GradScaler("cpu", init_scale=4.0, enabled=scaler_enabled)
        scaler.scale((p * torch.tensor([1.0, 2.0, 3.0])).sum()).backward()  # finite gradients
        OptimizerStep(optimizer, scaler, [p], grad_clip=None)(torch.tensor(finite))
        return p.detach(), scaler

    plain, _ = step(True, scaler_enabled=False)
    assert torch.equal(plain, torch.tensor([0.9, -2.2, 2.7]))
    scaled, _ = step(True, scaler_enabled=True)
    torch.testing.assert_close(scaled, plain)
    kept, scaler = step(False, scaler_enabled=True)  # a non-finite loss with finite gradients
    assert torch.equal(kept, torch.tensor([1.0, -2.0, 3.0]))
    assert scaler.get_scale() == 2.0  # the scaler saw the step as overflowed and backed off
