"""Baseline unsupervised losses against loop references (values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch

from tufl.losses import (
    TUFL,
    ConfidenceEntropy,
    EntropyMinimization,
    FixedThresholdFocalLoss,
    MaxSquares,
    neutral_cross_entropy,
)

C = 4


def pair(seed, shape=(2, C, 3, 3), scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z1 = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).requires_grad_()
    z2 = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).requires_grad_()
    valid = torch.rand(shape[0], *shape[2:], generator=g) > 0.3
    return z1, z2, valid


def probs(z, b, h, w):
    exps = [torch.exp(z[b, c, h, w]) for c in range(z.shape[1])]
    total = sum(exps)
    return [e / total for e in exps]


def pixels(z):
    batch, _, height, width = z.shape
    return [(b, h, w) for b in range(batch) for h in range(height) for w in range(width)]


def grads_of(fn, *tensors):
    for t in tensors:
        t.grad = None
    value = fn()
    value.backward()
    return value.detach(), [None if t.grad is None else t.grad.clone() for t in tensors]


def assert_same(got, expected):
    assert got[0].item() == pytest.approx(expected[0].item(), abs=1e-10)
    for a, b in zip(got[1], expected[1]):
        if b is None:
            assert a is None or (a == 0).all()
        else:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("view", ["weak", "strong"])
@pytest.mark.parametrize("threshold, ohem_ratio", [(0.0, 1.0), (0.5, 1.0), (0.4, 0.5), (0.8, 0.25)])
@pytest.mark.parametrize("normalize, weights", [(True, None), (False, None), (False, [1.0, 0.5, 2.0, 0.0])])
def test_entropy_minimization(view, threshold, ohem_ratio, normalize, weights):
    z1, z2, valid = pair(1, scale=3.0)
    loss_fn = EntropyMinimization(
        C, view=view, threshold=threshold, ohem_ratio=ohem_ratio, normalize=normalize, class_weights=weights
    )
    got = grads_of(lambda: loss_fn(z1, z2, valid), z1, z2)
    lam = weights or [1.0] * C
    divisor = math.log(C) if normalize else 1.0

    def loop():
        z = z1 if view == "weak" else z2
        losses = []
        for key in pixels(z):
            p = probs(z, *key)
            if valid[key] and max(float(v.detach()) for v in p) > threshold:
                losses.append(-sum(lam[c] * p[c] * torch.log(p[c]) for c in range(C)) / divisor)
        # the logged pass fraction: pixels above the threshold among the valid ones, before OHEM
        assert loss_fn.last_pass_fraction.item() == pytest.approx(len(losses) / int(valid.sum()))
        losses.sort(key=lambda v: float(v.detach()), reverse=True)
        kept = losses[: math.ceil(ohem_ratio * len(losses))]
        assert len(kept) >= 2
        return sum(kept) / len(kept)

    assert_same(got, grads_of(loop, z1, z2))
    assert (z1.grad is None) == (view == "strong")


@pytest.mark.parametrize("view", ["weak", "strong"])
def test_max_squares(view):
    z1, z2, valid = pair(2)
    loss_fn = MaxSquares(C, view=view)
    got = grads_of(lambda: loss_fn(z1, z2, valid), z1, z2)

    def loop():
        z = z1 if view == "weak" else z2
        losses = [-0.5 * sum(v * v for v in probs(z, *key)) for key in pixels(z) if valid[key]]
        return sum(losses) / len(losses)

    assert_same(got, grads_of(loop, z1, z2))


@pytest.mark.parametrize("view", ["weak", "strong"])
@pytest.mark.parametrize("masked", [False, True])
def test_confidence_entropy(view, masked):
    z1, z2, valid = pair(3)
    if not masked:
        valid = torch.ones_like(valid)
    loss_fn = ConfidenceEntropy(C, view=view)
    got = grads_of(lambda: loss_fn(z1, z2, valid if masked else None), z1, z2)

    def loop():
        z = z1 if view == "weak" else z2
        keys = [key for key in pixels(z) if valid[key]]
        frequency = [sum(float(probs(z, *key)[c].detach()) for key in keys) for c in range(C)]
        losses = []
        for key in keys:
            p = probs(z, *key)
            sharpened = [float(p[c].detach()) ** 2 / frequency[c] for c in range(C)]
            target = [s / sum(sharpened) for s in sharpened]
            losses.append(-sum(target[c] * torch.log(p[c]) for c in range(C)) / math.log(C))
        return sum(losses) / len(losses)

    assert_same(got, grads_of(loop, z1, z2))


@pytest.mark.parametrize("focal_type", [1, 2])
@pytest.mark.parametrize("ohem_ratio", [1.0, 0.6])
def test_fixed_threshold_focal_loss(focal_type, ohem_ratio):
    z1, z2, valid = pair(4)
    weights = [1.0, 0.5, 2.0, 1.5]
    loss_fn = FixedThresholdFocalLoss(
        C, threshold=0.5, focal_type=focal_type, ohem_ratio=ohem_ratio, class_weights=weights, loss_floor=0.0
    )
    got = grads_of(lambda: loss_fn(z1, z2, valid), z1, z2)
    pass_fraction = loss_fn.last_pass_fraction.item()

    def loop():
        losses, passed = [], 0
        for key in pixels(z1):
            p, q = probs(z1, *key), probs(z2, *key)
            values = [float(v.detach()) for v in p]
            k = values.index(max(values))
            if not (valid[key] and values[k] > 0.5):
                continue
            passed += 1
            base = 1 - q[k] if focal_type == 1 else p[k].detach() - q[k]
            focal = base.abs() ** 2
            pixel = 0
            for c in range(C):
                sg_p = p[c].detach()
                consistency = sg_p * (torch.log(sg_p) - focal * torch.log(q[c]))
                pixel = pixel + weights[c] * (consistency - p[c] * torch.log(p[c]))
            losses.append(pixel)
        assert pass_fraction == pytest.approx(passed / int(valid.sum()))
        losses.sort(key=lambda v: float(v.detach()), reverse=True)
        kept = losses[: math.ceil(ohem_ratio * len(losses))]
        return sum(kept) / len(kept)

    assert_same(got, grads_of(loop, z1, z2))
    # A second call with the same inputs gives the same loss: nothing adapts.
    assert loss_fn(z1, z2, valid).item() == got[0].item()


def test_neutral_cross_entropy_is_tufl_without_focal_factor():
    z1, z2, valid = pair(5)
    nce = neutral_cross_entropy(C, theta0=0.3, loss_floor=0.0).eval()
    assert isinstance(nce, TUFL) and nce.gamma == 0.0
    got = grads_of(lambda: nce(z1, z2, valid), z1, z2)

    def loop():
        losses = []
        for key in pixels(z1):
            p, q = probs(z1, *key), probs(z2, *key)
            if valid[key] and max(float(v.detach()) for v in p) > float(torch.tensor(0.3)):
                # Soft cross-entropy from sg(P) to Q plus the entropy of P (w = 1).
                pixel = 0
                for c in range(C):
                    sg_p = p[c].detach()
                    pixel = pixel + sg_p * (torch.log(sg_p) - torch.log(q[c])) - p[c] * torch.log(p[c])
                losses.append(pixel)
        return sum(losses) / len(losses)

    assert_same(got, grads_of(loop, z1, z2))


@pytest.mark.parametrize("loss_cls", [EntropyMinimization, MaxSquares, ConfidenceEntropy, FixedThresholdFocalLoss])
def test_no_counted_pixel_gives_zero_with_finite_gradient(loss_cls):
    z1, z2, _ = pair(6)
    loss = loss_cls(C)(z1, z2, torch.zeros(2, 3, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    for z in (z1, z2):
        assert z.grad is None or torch.isfinite(z.grad).all()


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="view"):
        MaxSquares(C, view="both")
    with pytest.raises(ValueError, match="threshold"):
        EntropyMinimization(C, threshold=1.5)
    with pytest.raises(ValueError, match="ohem_ratio"):
        EntropyMinimization(C, ohem_ratio=0.0)
    with pytest.raises(ValueError, match="focal_type"):
        FixedThresholdFocalLoss(C, focal_type=0)
    with pytest.raises(ValueError, match="class_weights"):
        EntropyMinimization(C, class_weights=[1.0, 2.0])
