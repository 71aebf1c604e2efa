"""The CUDA-graph wrapper's own logic, on the CPU: ``torch.cuda.make_graphed_callables``
is replaced by a recorder that returns the step unchanged (tests/test_cuda.py checks
the real graphs on a GPU)."""

from __future__ import annotations

import copy

import pytest
import torch

from tufl.losses import TUFL
from tufl.losses.cuda_graphs import GraphedSteps

C = 5


@pytest.fixture
def recordings(monkeypatch):
    """Signatures ``make_graphed_callables`` was asked to record; the step runs as it is."""
    recorded = []

    def record(step, samples):
        assert all(s.is_leaf for s in samples)  # required by make_graphed_callables
        recorded.append(tuple((tuple(s.shape), s.requires_grad) for s in samples))
        return step

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", record)
    return recorded


def _step(a, b):
    return (a * b).sum(), b.sum()


def test_one_recording_per_signature_and_a_backward_before_each_next_call(recordings):
    graphs = GraphedSteps("TUFL")
    a, b = torch.randn(3, requires_grad=True), torch.randn(3)
    loss, _ = graphs(_step, ("key",), a, b)
    with pytest.raises(RuntimeError, match="TUFL: the previous loss was not back-propagated"):
        graphs(_step, ("key",), a, b)
    loss.backward()
    torch.testing.assert_close(a.grad, b)
    graphs(_step, ("key",), a, b)[0].backward()
    assert recordings == [(((3,), True), ((3,), False))]
    graphs(_step, ("key",), torch.randn(4, requires_grad=True), torch.randn(4))[0].backward()
    graphs(_step, ("other",), a, b)[0].backward()
    assert len(recordings) == 3
    graphs(_step, ("key",), a.detach(), b)  # no gradient: nothing pending
    graphs(_step, ("key",), a.detach(), b)
    assert len(recordings) == 4


def test_copies_start_without_recordings(recordings):
    graphs = GraphedSteps("TUFL")
    graphs(_step, (), torch.randn(3, requires_grad=True), torch.randn(3))  # left pending
    for clone in (copy.deepcopy(graphs), copy.copy(graphs)):
        clone(_step, (), torch.randn(3, requires_grad=True), torch.randn(3))[0].backward()
    assert len(recordings) == 3


@pytest.mark.parametrize("with_valid, compile", [(False, False), (True, False), (True, True)])
def test_graphed_step_follows_the_eager_loss(recordings, with_valid, compile):
    """The pure step given to the graphs (thresholds returned, then written by TUFL; with
    ``compile`` the reduction through torch.compile) gives the eager call's losses, pass
    fractions, gradients and thresholds, step after step."""
    weights = [1.0, 2.0, 0.5, 1.0, 1.0]
    eager, graphed = TUFL(C, class_weights=weights), TUFL(C, class_weights=weights, compile=compile)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        weak = (3 * torch.randn(2, C, 6, 7, generator=g, dtype=torch.float64)).requires_grad_(True)
        strong = (weak.detach() + torch.randn(2, C, 6, 7, generator=g, dtype=torch.float64)).requires_grad_(True)
        valid = torch.rand(2, 6, 7, generator=g) > 0.2 if with_valid else None
        results = []
        for loss_fn, call in ((eager, eager), (graphed, graphed._graphed_step)):
            w, s = weak.detach().clone().requires_grad_(True), strong.detach().clone().requires_grad_(True)
            focal = (loss_fn.gamma, loss_fn.focal_type, loss_fn.class_weights, loss_fn.detach_focal)
            loss = call(w, s, valid) if call is eager else call(w, s, valid, focal)
            loss.backward()
            results.append((loss.detach(), loss_fn.last_pass_fraction, w.grad, s.grad, loss_fn.thresholds.clone()))
        for a, b in zip(*results):
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
    assert int(graphed.step) == int(eager.step) == 4 and not torch.all(graphed.thresholds == 0.8)
    assert len(recordings) == 1  # one signature: recorded once
