"""The CUDA-graph wrapper's own logic, on the CPU: recording a graph is replaced by
running the function (then undoing its writes to the tensors a test names, as a
recording runs nothing), and a replay runs it again (tests/test_cuda.py checks the
real graphs on a GPU). Addressed tensors are found by address through a registry, as
the kernels find them through the table."""

from __future__ import annotations

import copy
import gc
import types

import pytest
import torch

from tufl.losses import TUFL
from tufl.losses import cuda_graphs
from tufl.losses import tufl as tufl_module
from tufl.losses.cuda_graphs import StepGraphs
from tufl.losses.focal_compiled import differentiable_focal_terms

C = 5


class _FakeGraph:
    def __init__(self, function, result):
        self.function, self.result = function, result

    def replay(self):  # as recorded: with autograd on (a real replay does no autograd at all)
        with torch.enable_grad():
            self.result[0] = self.function()

    def pool(self):
        return None


class _Recorded(list):
    """Devices of the recordings (one warm-up each), and the tensors a recording must leave as they are."""

    untouched: list[torch.Tensor]


@pytest.fixture
def recordings(monkeypatch):
    """Counts recordings; graphs re-run their function on replay."""
    recorded = _Recorded()
    recorded.untouched = []

    def warm_up(run, device):
        recorded.append(device)
        run()

    def capture(function, pool=None):
        before = [t.clone() for t in recorded.untouched]
        result = [function()]
        with torch.no_grad():
            for tensor, value in zip(recorded.untouched, before):
                tensor.copy_(value)
        return _FakeGraph(function, result), result

    monkeypatch.setattr(cuda_graphs, "_warm_up", warm_up)
    monkeypatch.setattr(cuda_graphs, "_capture", capture)
    return recorded


REGISTRY: dict[int, torch.Tensor] = {}


def _addressed(*tensors):
    for t in tensors:
        REGISTRY[t.data_ptr()] = t
    return tensors


class _ProductStep:
    """loss = h * sum(a * b) + sum(c) for addressed a, b (read through the table), held h and
    copied c, returned with h; h then grows by 1. Explicit gradients, as the kernels' backward."""

    def forward(self, table, held, copied):
        a, b = (REGISTRY[int(address)].detach() for address in table)
        loss = (held * (a * b).sum() + copied.sum()).requires_grad_()
        return (loss, held.clone()), (a, b, held.clone(), copied), (held + 1,)

    def backward(self, table, grad_output, outputs, state):
        a, b, held, copied = state
        return grad_output * held * b, grad_output * held * a, grad_output * torch.ones_like(copied)


def test_step_graphs_read_each_calls_tensors_and_record_once_per_signature(recordings):
    graphs, step, held = StepGraphs("TUFL"), _ProductStep, torch.tensor(2.0)
    recordings.untouched.append(held)
    kept = []
    for seed in range(3):  # new tensors each call: new table entries, new copies
        g = torch.Generator().manual_seed(seed)
        a, b = _addressed(torch.randn(4, generator=g).requires_grad_(), torch.randn(4, generator=g).requires_grad_())
        c = torch.randn(3, generator=g, requires_grad=True)
        loss, out_held = graphs(step, ("key",), (a, b), (held,), (c,))
        h = 2.0 + seed
        torch.testing.assert_close(loss, h * (a * b).sum() + c.sum())
        assert not out_held.requires_grad and float(out_held) == h and float(held) == h + 1
        (3.0 * loss).backward()
        torch.testing.assert_close(a.grad, 3.0 * h * b.detach())
        torch.testing.assert_close(b.grad, 3.0 * h * a.detach())
        torch.testing.assert_close(c.grad, torch.full((3,), 3.0))
        kept.append((loss.detach(), h * (a * b).sum().detach() + c.sum().detach()))
    for loss, expected in kept:  # returned outputs are copies: later calls leave them alone
        torch.testing.assert_close(loss, expected)
    assert len(recordings) == 1
    a, b = _addressed(torch.randn(5, requires_grad=True), torch.randn(5))
    graphs(step, ("key",), (a, b), (held,), (torch.randn(3),))[0].backward()  # other shape and requires_grad
    graphs(step, ("other",), (a, b), (held,), (torch.randn(3),))[0].backward()
    graphs(step, ("other",), (a, b), (torch.tensor(2.0),), (torch.randn(3),))[0].backward()  # held elsewhere
    assert len(recordings) == 4


def test_step_graphs_want_each_backward_before_the_next_call_and_only_once(recordings):
    """Unless the previous loss and everything computed from it are gone."""
    graphs, step = StepGraphs("TUFL"), _ProductStep
    a, b = _addressed(torch.randn(4, requires_grad=True), torch.randn(4))
    loss, _ = graphs(step, (), (a, b), (torch.tensor(1.0),), (torch.randn(3),))
    with pytest.raises(RuntimeError, match="TUFL: the previous loss was not back-propagated"):
        graphs(step, (), (a, b), (torch.tensor(1.0),), (torch.randn(3),))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="back-propagated only once"):
        loss.backward()
    with torch.no_grad():  # no gradient: nothing pending
        graphs(step, (), (a, b), (torch.tensor(1.0),), (torch.randn(3),))
        graphs(step, (), (a, b), (torch.tensor(1.0),), (torch.randn(3),))
    scaled = 2.0 * graphs(step, (), (a, b), (torch.tensor(1.0),), (torch.randn(3),))[0]
    with pytest.raises(RuntimeError, match="not back-propagated"):  # its graph lives on in `scaled`
        graphs(step, (), (a, b), (torch.tensor(1.0),), (torch.randn(3),))
    del scaled  # dropped without a backward: nothing can read the graphs' state any more
    gc.collect()
    graphs(step, (), (a, b), (torch.tensor(1.0),), (torch.randn(3),))[0].backward()


def test_step_graphs_refuse_logits_changed_before_the_backward(recordings):
    graphs = StepGraphs("TUFL")
    a, b = _addressed(torch.randn(4, requires_grad=True), torch.randn(4))
    a_view = a * 1.0
    _addressed(a_view)
    loss, _ = graphs(_ProductStep, (), (a_view, b), (torch.tensor(1.0),), (torch.randn(3),))
    with torch.no_grad():
        a_view.add_(1.0)  # the backward graph would read the changed logits
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_copies_start_without_recordings(recordings):
    graphs = StepGraphs("TUFL")
    a, b = _addressed(torch.randn(3, requires_grad=True), torch.randn(3))
    graphs(_ProductStep, (), (a, b), (torch.tensor(1.0),), (torch.randn(3),))  # left pending
    for clone in (copy.deepcopy(graphs), copy.copy(graphs)):
        clone(_ProductStep, (), (a, b), (torch.tensor(1.0),), (torch.randn(3),))[0].backward()
    assert len(recordings) == 3


def _autograd_kernels():
    """The contract of tufl.losses.focal_triton's launch functions, by autograd on the torch
    formulas: logits found through the table, gradients from what the forward saved."""
    kept, calls = {}, []

    def launch_forward(table, shape, weights, options, save):
        calls.append(shape)
        weak, strong = (REGISTRY[int(address)].detach().flatten(2).requires_grad_() for address in table)
        gamma, focal_type, detach_focal = options
        with torch.enable_grad():
            loss, conf, cls = differentiable_focal_terms(
                weak.unsqueeze(-1), strong.unsqueeze(-1), gamma, focal_type, weights, detach_focal)
        saved = torch.zeros(shape[0], 6, shape[2])
        kept[saved.data_ptr()] = (loss, weak, strong)
        return loss.detach().squeeze(-1), conf.squeeze(-1), cls.squeeze(-1), saved

    def launch_backward(table, shape, weights, cls, saved, grad_loss, want):
        loss, weak, strong = kept.pop(saved.data_ptr())
        grads = torch.autograd.grad(loss, (weak, strong), grad_loss.unsqueeze(-1))
        return tuple(g if w else None for g, w in zip(grads, want))

    return types.SimpleNamespace(launch_forward=launch_forward, launch_backward=launch_backward, calls=calls)


@pytest.mark.parametrize(
    "with_valid, compile, kernels",
    [(False, False, False), (True, False, False), (True, True, False), (False, False, True), (True, True, True)],
)
def test_graphed_step_follows_the_eager_loss(recordings, monkeypatch, with_valid, compile, kernels):
    """The pure steps given to the graphs (thresholds returned, then written by TUFL; with
    ``compile`` the reduction through torch.compile), with the per-pixel torch operations
    on copied logits or with kernels that read the logits through the table, give the
    eager call's losses, pass fractions, gradients and thresholds, step after step."""
    if kernels:
        fake = _autograd_kernels()
        monkeypatch.setattr(tufl_module, "triton_kernels", lambda *_: fake)
        monkeypatch.setattr(tufl_module, "_addressable", lambda t, dtype: _addressed(t.contiguous())[0])
    weights = [1.0, 2.0, 0.5, 1.0, 1.0]
    eager, graphed = TUFL(C, class_weights=weights), TUFL(C, class_weights=weights, compile=compile)
    recordings.untouched += [graphed.thresholds, graphed.step]
    g = torch.Generator().manual_seed(0)
    dtype = torch.float32 if kernels else torch.float64
    for _ in range(4):
        weak = (3 * torch.randn(2, C, 6, 7, generator=g, dtype=dtype)).requires_grad_(True)
        strong = (weak.detach() + torch.randn(2, C, 6, 7, generator=g, dtype=dtype)).requires_grad_(True)
        valid = torch.rand(2, 6, 7, generator=g) > 0.2 if with_valid else None
        results = []
        for loss_fn, call in ((eager, eager), (graphed, graphed._graphed_step)):
            w, s = weak.detach().clone().requires_grad_(True), strong.detach().clone().requires_grad_(True)
            loss = call(w, s, valid)
            loss.backward()
            results.append((loss.detach(), loss_fn.last_pass_fraction, w.grad, s.grad, loss_fn.thresholds.clone()))
        tolerance = {"rtol": 1e-5, "atol": 1e-6} if kernels else {"rtol": 1e-12, "atol": 1e-14}
        for a, b in zip(*results):
            torch.testing.assert_close(b, a, **tolerance)
    assert int(graphed.step) == int(eager.step) == 4 and not torch.all(graphed.thresholds == 0.8)
    assert len(recordings) == 1  # one signature: recorded once
    if kernels:
        assert len(fake.calls) == 1 + 1 + 4  # warm-up (once here), recording, a replay (a re-run here) per call
