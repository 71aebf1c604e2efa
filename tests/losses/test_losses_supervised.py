"""Supervised cross-entropy against a hand-written reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tufl.losses import SupervisedCE

C = 4


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(2, C, 3, 4, generator=g, dtype=torch.float64) * 2).requires_grad_()
    labels = torch.randint(0, C, (2, 3, 4), generator=g)
    labels[torch.rand(2, 3, 4, generator=g) < 0.25] = 255
    return logits, labels


def loop_reference(logits, labels, weights, ohem_ratio):
    terms = []
    batch_size, classes, height, width = logits.shape
    for b in range(batch_size):
        for h in range(height):
            for w in range(width):
                y = int(labels[b, h, w])
                if y == 255:
                    continue
                exps = [torch.exp(logits[b, c, h, w]) for c in range(classes)]
                ce = -torch.log(exps[y] / sum(exps))
                terms.append((weights[y] * ce, weights[y]))
    terms.sort(key=lambda t: float(t[0].detach()), reverse=True)
    kept = terms[: math.ceil(ohem_ratio * len(terms))]
    return sum(t[0] for t in kept) / sum(t[1] for t in kept)


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5, 3.0]])
@pytest.mark.parametrize("ohem_ratio", [1.0, 0.5, 0.2])
def test_matches_loop_reference(weights, ohem_ratio):
    logits, labels = batch(1)
    loss = SupervisedCE(C, class_weights=weights, ohem_ratio=ohem_ratio)(logits, labels)
    loss.backward()
    got = loss.detach(), logits.grad.clone()
    logits.grad = None
    expected = loop_reference(logits, labels, weights or [1.0] * C, ohem_ratio)
    expected.backward()
    assert got[0].item() == pytest.approx(expected.item(), abs=1e-10)
    torch.testing.assert_close(got[1], logits.grad, atol=1e-10, rtol=1e-8)


def test_without_ohem_equals_torch_weighted_cross_entropy():
    logits, labels = batch(2)
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    ours = SupervisedCE(C, class_weights=weights)(logits, labels.to(torch.uint8))
    theirs = F.cross_entropy(logits, labels, weight=weights.double(), ignore_index=255)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)


def test_all_ignored_gives_zero_with_finite_gradient():
    logits, labels = batch(3)
    loss = SupervisedCE(C, class_weights=[1.0, 1.0, 2.0, 1.0], ohem_ratio=0.5)(logits, torch.full_like(labels, 255))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_float32_under_autocast():
    logits, labels = batch(4)
    logits = logits.detach().float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = SupervisedCE(C)(logits, labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(F.cross_entropy(logits, labels, ignore_index=255).item(), rel=1e-6)


def test_bad_inputs_are_rejected():
    loss_fn = SupervisedCE(C)
    logits = torch.randn(2, C, 3, 4)
    with pytest.raises(ValueError, match="labels"):
        loss_fn(logits, torch.zeros(2, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        loss_fn(logits, torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="logits"):
        loss_fn(torch.randn(2, C + 1, 3, 4), torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="ohem_ratio"):
        SupervisedCE(C, ohem_ratio=1.5)
    with pytest.raises(ValueError, match="class_weights"):
        SupervisedCE(C, class_weights=[1.0, 2.0])
