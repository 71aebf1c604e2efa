"""The loss floor (``loss_floor``): counted per-pixel losses are clamped at it before OHEM and
the mean, as in the authors' release (``torch.clamp``: no gradient below the floor)."""

from __future__ import annotations

import math

import pytest
import torch

from tufl.losses import TUFL, FixedThresholdFocalLoss

C = 3
FLOOR = 1e-8
THRESHOLD = 0.5
# Per pixel: weak logits, strong logits. Pixels 0 and 1 are confident in both views on the same
# class, so the focal factor (1 - q_k)^2 ~ 1e-17 puts their loss far below the floor; pixel 5
# fails the threshold (max p = 0.36); the others pass with losses well above the floor.
PIXELS = [
    ([20.0, 0.0, 0.0], [20.0, 0.0, 0.0]),
    ([0.0, 22.0, 0.0], [0.0, 21.0, 0.0]),
    ([2.0, 0.0, -1.0], [1.0, 0.5, 0.0]),
    ([0.0, 3.0, 1.0], [0.0, 1.0, 2.0]),
    ([-1.0, 0.0, 2.5], [0.5, 0.0, 1.0]),
    ([0.1, 0.0, 0.0], [0.0, 2.0, 0.0]),
    ([4.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
    ([0.0, 0.0, 3.0], [0.0, 0.0, 3.0]),
]
BELOW, FAILING = [0, 1], [5]
ABOVE = [i for i in range(len(PIXELS)) if i not in BELOW + FAILING]


def logits() -> tuple[torch.Tensor, torch.Tensor]:
    """``[1, C, 2, 4]`` float64 weak and strong logits of ``PIXELS`` (row-major)."""
    weak, strong = (torch.tensor([p[view] for p in PIXELS], dtype=torch.float64) for view in (0, 1))
    return tuple(t.T.reshape(1, C, 2, 4).requires_grad_() for t in (weak, strong))


def softmax(z: list[float]) -> list[float]:
    top = max(z)
    exps = [math.exp(v - top) for v in z]
    return [e / sum(exps) for e in exps]


def reference_losses() -> list[float]:
    """PAPER.md's per-pixel value ``-(1 - q_k)^2 sum_c p_c log q_c`` (the entropy term is 0 in value)."""
    out = []
    for weak, strong in PIXELS:
        p, q = softmax(weak), softmax(strong)
        k = p.index(max(p))
        out.append(-((1 - q[k]) ** 2) * sum(pc * math.log(qc) for pc, qc in zip(p, q)))
    return out


def reference_mean(floor: float, ohem_ratio: float) -> float:
    values = sorted((max(reference_losses()[i], floor) for i in BELOW + ABOVE), reverse=True)
    kept = values[: math.ceil(ohem_ratio * len(values))]
    return sum(kept) / len(kept)


def weak_entropy_gradient(pixel: int, count: int) -> torch.Tensor:
    """Hand-derived weak-view gradient of a pixel whose focal part vanishes: d(H(P))/dz / count."""
    p = torch.softmax(torch.tensor(PIXELS[pixel][0], dtype=torch.float64), 0)
    return -p * (p.log() - (p * p.log()).sum()) / count


def per_pixel(grad: torch.Tensor) -> torch.Tensor:
    """``[8, C]``: a ``[1, C, 2, 4]`` gradient by pixel."""
    return grad.reshape(C, -1).T


LOSSES = {
    "fused": lambda **kw: TUFL(C, theta0=THRESHOLD, backend="fused", **kw).eval(),
    "torch": lambda **kw: TUFL(C, theta0=THRESHOLD, backend="torch", **kw).eval(),
    "fixed_threshold": lambda **kw: FixedThresholdFocalLoss(C, threshold=THRESHOLD, focal_type=1, **kw),
}


def run(make, **options) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    weak, strong = logits()
    loss = make(**options)(weak, strong)
    loss.backward()
    return loss.detach(), per_pixel(weak.grad), per_pixel(strong.grad)


def test_the_example_has_losses_on_both_sides_of_the_floor():
    losses = reference_losses()
    assert all(losses[i] < 1e-20 for i in BELOW) and all(losses[i] > 1e-4 for i in ABOVE)
    assert max(softmax(PIXELS[5][0])) < THRESHOLD < min(max(softmax(PIXELS[i][0])) for i in BELOW + ABOVE)


@pytest.mark.parametrize("path", LOSSES)
def test_floor_cuts_the_gradient_below_it_and_leaves_the_rest(path):
    with_floor = run(LOSSES[path], loss_floor=FLOOR)
    without = run(LOSSES[path], loss_floor=0.0)
    assert with_floor[0].item() == pytest.approx(reference_mean(FLOOR, 1.0), rel=1e-12, abs=0)
    assert without[0].item() == pytest.approx(reference_mean(0.0, 1.0), rel=1e-12, abs=0)
    for grads, grads_without in zip(with_floor[1:], without[1:]):
        assert torch.all(grads[BELOW] == 0) and torch.all(grads[FAILING] == 0)
        torch.testing.assert_close(grads[ABOVE], grads_without[ABOVE], rtol=1e-12, atol=0)
    # Without the floor the confident pixels still get the entropy gradient in the weak view.
    for pixel in BELOW:
        torch.testing.assert_close(without[1][pixel], weak_entropy_gradient(pixel, 7), rtol=1e-6, atol=0)
        assert without[1][pixel].abs().max() > 1e-10


@pytest.mark.parametrize("path", ["fused", "fixed_threshold"])
def test_ohem_ranks_the_clamped_losses(path):
    # 7 pixels pass; ceil(0.8 * 7) = 6 are kept: the 5 above the floor and one at the floor.
    loss, weak_grad, strong_grad = run(LOSSES[path], loss_floor=FLOOR, ohem_ratio=0.8)
    expected = (sum(reference_losses()[i] for i in ABOVE) + FLOOR) / 6
    assert loss.item() == pytest.approx(expected, rel=1e-12, abs=0)
    assert reference_mean(FLOOR, 0.8) == pytest.approx(expected, rel=1e-14)
    assert torch.all(weak_grad[BELOW] == 0) and torch.all(strong_grad[BELOW] == 0)
    assert torch.all(weak_grad[ABOVE].abs().sum(dim=1) > 0)


def test_training_call_with_floor_is_the_same_for_every_backend():
    results = []
    for backend in ("torch", "fused"):
        loss_fn = TUFL(C, theta0=THRESHOLD, loss_floor=FLOOR, ohem_ratio=0.8, backend=backend)
        weak, strong = logits()
        loss = loss_fn(weak, strong)
        loss.backward()
        results.append((loss.detach(), weak.grad, strong.grad, loss_fn.thresholds.clone()))
    for definition, fused in zip(*results):
        torch.testing.assert_close(fused, definition, rtol=1e-12, atol=1e-15)


def test_thresholded_mean_clamps_on_its_own():
    """The reduction alone: the floor enters the mean, and no gradient flows below it."""
    from tufl.losses.selection import thresholded_mean

    per_pixel_loss = torch.tensor([[[0.1, 0.5, 2.0]]], dtype=torch.float64, requires_grad=True)
    conf, cls = torch.full((1, 1, 3), 0.9), torch.zeros(1, 1, 3, dtype=torch.long)
    loss, _ = thresholded_mean(per_pixel_loss, conf, cls, None, torch.full((C,), 0.8), 1.0, loss_floor=0.25)
    loss.backward()
    assert loss.item() == pytest.approx((0.25 + 0.5 + 2.0) / 3, rel=1e-15)
    assert per_pixel_loss.grad.flatten().tolist() == [0.0, 1 / 3, 1 / 3]


@pytest.mark.parametrize("bad", [-1e-8, float("nan"), float("inf")])
def test_impossible_floors_are_rejected(bad):
    with pytest.raises(ValueError, match="loss_floor"):
        TUFL(C, loss_floor=bad)
    with pytest.raises(ValueError, match="loss_floor"):
        FixedThresholdFocalLoss(C, loss_floor=bad)


def test_floor_is_shown_in_the_module_repr():
    assert "loss_floor=1e-08" in repr(TUFL(C, loss_floor=FLOOR))
    assert "loss_floor=1e-08" in repr(FixedThresholdFocalLoss(C, loss_floor=FLOOR))
