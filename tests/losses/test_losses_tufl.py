"""TUFL against hand-written references with explicit loops (the loss, thresholds, the slow reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loss_loops import C, literal_psi, literal_update, loop_masked_mean, loop_pixel_losses, pixel_stats, random_pair
from tufl.bench.loss_reference import ReferenceTUFL
from tufl.losses import TUFL, order_statistic_psi


# ----------------------------------------------------------------- full loss, fixed thresholds


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(focal_type=2),
        dict(detach_focal=True),
        dict(gamma=0.0),
        dict(ohem_ratio=0.5),
        dict(ohem_ratio=0.3, focal_type=2, class_weights=[1.0, 0.5, 2.0, 0.0]),
        dict(class_weights=[0.5, 2.0, 1.0, 3.0], detach_focal=True),
    ],
)
@pytest.mark.parametrize("masked", [False, True])
def test_loss_with_given_thresholds_matches_loop_reference(options, masked):
    z1, z2 = random_pair(3)
    g = torch.Generator().manual_seed(4)
    valid = torch.rand(2, 3, 3, generator=g) > 0.3 if masked else torch.ones(2, 3, 3, dtype=torch.bool)
    thresholds = [0.3, 0.5, 0.4, 0.6]
    loss_fn = TUFL(C, loss_floor=0.0, **options).eval()  # the loop reference has no floor
    loss_fn.thresholds.copy_(torch.tensor(thresholds))
    loss = loss_fn(z1, z2, valid if masked else None)
    loss.backward()
    got = (loss.detach(), z1.grad.clone(), z2.grad.clone())

    z1.grad = z2.grad = None
    lam = options.get("class_weights", [1.0] * C)
    pixels = loop_pixel_losses(
        z1, z2, options.get("gamma", 2.0), options.get("focal_type", 1), lam, options.get("detach_focal", False)
    )
    stored_thresholds = [float(np.float32(t)) for t in thresholds]
    expected = loop_masked_mean(pixels, valid, stored_thresholds, options.get("ohem_ratio", 1.0))
    assert expected is not None
    expected.backward()
    assert got[0].item() == pytest.approx(expected.item(), abs=1e-10)
    torch.testing.assert_close(got[1], z1.grad, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(got[2], z2.grad, atol=1e-10, rtol=1e-8)
    passed = sum(1 for key, (_, m, k) in pixels.items() if valid[key] and m > np.float32(thresholds[k]))
    assert loss_fn.last_pass_fraction.item() == pytest.approx(passed / int(valid.sum()))
    torch.testing.assert_close(loss_fn.thresholds, torch.tensor(thresholds))  # eval: no update


def test_training_step_updates_thresholds_before_masking():
    z1, z2 = random_pair(5, shape=(2, C, 4, 4), scale=3.0)
    valid = torch.ones(2, 4, 4, dtype=torch.bool)
    valid[1, :2] = False
    loss_fn = TUFL(C, theta0=0.6, a=0.2, b=0.5, d=2.0, loss_floor=0.0)
    loss = loss_fn(z1, z2, valid)
    loss.backward()

    confs, classes = pixel_stats(z1.detach(), valid)
    theta0 = [float(np.float32(0.6))] * C
    theta1 = literal_update(theta0, literal_psi(confs, classes, theta0, 0.5, 2.0), 0.2, 0.0, 0)
    torch.testing.assert_close(loss_fn.thresholds, torch.tensor(theta1, dtype=torch.float32), atol=1e-6, rtol=0)
    assert loss_fn.step.item() == 1
    pixels = loop_pixel_losses(z1, z2, 2.0, 1, [1.0] * C, False)
    expected = loop_masked_mean(pixels, valid, theta1, 1.0)
    # theta0 would keep a different pixel set: the test must tell the orders apart.
    assert loop_masked_mean(pixels, valid, theta0, 1.0).item() != pytest.approx(expected.item())
    assert loss.item() == pytest.approx(expected.item(), abs=1e-9)


def test_zero_loss_and_finite_gradient_when_no_pixel_passes():
    z1, z2 = random_pair(6, dtype=torch.float32)
    loss_fn = TUFL(C).eval()
    loss_fn.thresholds.fill_(0.999)
    loss = loss_fn(z1, z2)
    loss.backward()
    assert loss.item() == 0.0 and loss.requires_grad
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    assert (z1.grad == 0).all() and (z2.grad == 0).all()
    assert loss_fn.last_pass_fraction.item() == 0.0


def test_nothing_counts_outside_the_valid_mask():
    z1, z2 = random_pair(7, dtype=torch.float32)
    loss_fn = TUFL(C, theta0=0.0)
    loss = loss_fn(z1, z2, torch.zeros(2, 3, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and (z1.grad == 0).all() and (z2.grad == 0).all()
    # No class has a valid pixel: psi = theta, so theta stays (up to float32 rounding).
    torch.testing.assert_close(loss_fn.thresholds, torch.zeros(C))


def test_pixels_outside_the_mask_do_not_influence_anything():
    z1, z2 = random_pair(7, shape=(2, C, 4, 4), dtype=torch.float32)
    valid = torch.ones(2, 4, 4, dtype=torch.bool)
    valid[0, :2] = False
    other1, other2 = z1.detach().clone(), z2.detach().clone()
    other1[0, :, :2] = torch.tensor([30.0, -30.0, 0.0, 0.0]).view(C, 1, 1)  # confident garbage
    other2[0, :, :2] = -other1[0, :, :2]
    first, second = TUFL(C, theta0=0.5), TUFL(C, theta0=0.5)
    for _ in range(2):
        a = first(z1, z2, valid)
        b = second(other1, other2, valid)
        assert a.item() == b.item()
        assert torch.equal(first.thresholds, second.thresholds)
        assert first.last_pass_fraction.item() == second.last_pass_fraction.item()


def test_loss_is_float32_under_autocast_and_matches_plain_run():
    z1, z2 = random_pair(8, shape=(2, C, 8, 8), dtype=torch.float32)
    plain = TUFL(C, theta0=0.3)(z1, z2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = TUFL(C, theta0=0.3)(z1, z2)
    assert autocast.dtype == torch.float32
    assert autocast.item() == pytest.approx(plain.item(), rel=1e-6)


def test_low_precision_logits_give_float32_loss_and_gradients_of_their_dtype():
    z1, z2 = random_pair(9, dtype=torch.bfloat16)
    loss = TUFL(C, theta0=0.3)(z1, z2)
    loss.backward()
    assert loss.dtype == torch.float32 and z1.grad.dtype == torch.bfloat16


def test_state_dict_round_trip_keeps_thresholds_and_step():
    z1, z2 = random_pair(10, dtype=torch.float32)
    trained = TUFL(C)
    for _ in range(3):
        trained(z1, z2)
    state = trained.state_dict()
    assert set(state) == {"thresholds", "step"}
    restored = TUFL(C)
    restored.load_state_dict(state)
    assert torch.equal(restored.thresholds, trained.thresholds) and restored.step.item() == 3


def test_second_backward_is_refused_with_a_clear_error():
    z1, z2 = random_pair(11, dtype=torch.float32)
    loss = TUFL(C, theta0=0.0)(z1, z2)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(gamma=-1.0), "gamma"),
        (dict(focal_type=3), "focal_type"),
        (dict(theta0=1.0), "theta0"),
        (dict(a=1.5), "a"),
        (dict(b=-0.1), "b"),
        (dict(b=1.0, d=0.0), "b"),
        (dict(d=-1.0), "d"),
        (dict(a_decay=-1.0), "a_decay"),
        (dict(ohem_ratio=0.0), "ohem_ratio"),
        (dict(class_weights=[1.0, 2.0]), "class_weights"),
        (dict(class_weights=[1.0, -2.0, 1.0, 1.0]), "class_weights"),
    ],
)
def test_impossible_options_are_rejected(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TUFL(C, **kwargs)


def test_bad_inputs_are_rejected():
    loss_fn = TUFL(C)
    z = torch.randn(2, C, 3, 3)
    with pytest.raises(ValueError, match="strong_logits"):
        loss_fn(z, torch.randn(2, C + 1, 3, 3))
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(z, torch.randn(2, C, 3, 4))
    with pytest.raises(ValueError, match="valid"):
        loss_fn(z, z, torch.ones(2, 3, 3))
    with pytest.raises(ValueError, match="weak_logits"):
        loss_fn(z[0], z[0])


# ----------------------------------------------------------------- thresholds


@pytest.mark.parametrize("min_confidence", [0.0, 0.4])  # 64-bit and 32-bit sort keys
@pytest.mark.parametrize("b, d", [(0.8, 8.0), (0.2, 8.0), (1.0, 1.0), (0.5, 0.0), (0.0, 3.0)])
def test_order_statistic_equals_literal_pseudo_code(b, d, min_confidence):
    g = torch.Generator().manual_seed(12)
    classes = 6
    n = 300
    # Coarse confidences force ties, also with theta itself; the last class never appears.
    conf = (torch.randint(40, 101, (n,), generator=g).float() / 100).to(torch.float32)
    cls = torch.randint(0, classes - 1, (n,), generator=g)
    valid = torch.rand(n, generator=g) > 0.2
    theta = torch.tensor([0.8, 0.5, 0.0, 0.999, 0.7, 0.6], dtype=torch.float32)
    got = order_statistic_psi(conf, cls, valid, theta, b, d, min_confidence)
    expected = literal_psi(
        [float(v) for v in conf[valid]], [int(v) for v in cls[valid]], [float(t) for t in theta], b, d
    )
    assert got.tolist() == expected  # exact: psi is one of the listed values


def test_order_statistic_with_empty_and_fully_invalid_input():
    theta = torch.tensor([0.3, 0.9])
    empty = order_statistic_psi(torch.empty(0), torch.empty(0, dtype=torch.long), None, theta, 0.8, 8.0)
    assert torch.equal(empty, theta)
    conf, cls = torch.tensor([0.95, 0.99]), torch.tensor([0, 1])
    invalid = order_statistic_psi(conf, cls, torch.zeros(2, dtype=torch.bool), theta, 0.8, 8.0)
    assert torch.equal(invalid, theta)


def test_order_statistic_hand_example():
    # Class 0: confidences 0.9, 0.6, 0.95 plus theta 0.5 -> [0.95, 0.9, 0.6, 0.5];
    # index floor(4 * 0.5 * 0.5^1) = 1 -> 0.9. Class 1: [0.7, 0.5(theta)], index floor(2*0.5*0.5) = 0.
    conf = torch.tensor([0.9, 0.6, 0.7, 0.95])
    cls = torch.tensor([0, 0, 1, 0])
    psi = order_statistic_psi(conf, cls, None, torch.tensor([0.5, 0.5, 0.5]), 0.5, 1.0)
    assert psi.tolist() == [pytest.approx(0.9), pytest.approx(0.7), 0.5]


@pytest.mark.parametrize("a_decay", [0.0, 0.3])
def test_threshold_updates_over_several_steps_match_literal_pseudo_code(a_decay):
    loss_fn = TUFL(C, theta0=0.8, a=0.2, b=0.8, d=8.0, a_decay=a_decay)
    theta = [float(np.float32(0.8))] * C
    g = torch.Generator().manual_seed(13)
    for t, scale in enumerate([1.0, 2.0, 30.0, 40.0, 50.0, 60.0]):
        z1 = torch.randn(2, C, 5, 5, generator=g) * scale  # confident late steps reach the 0.999 cap
        z1[:, 3] = -1e4  # class 3 is never predicted
        z2 = torch.randn(2, C, 5, 5, generator=g)
        valid = torch.rand(2, 5, 5, generator=g) > 0.25
        loss_fn(z1, z2, valid)
        confs, classes = pixel_stats(z1, valid)
        theta = literal_update(theta, literal_psi(confs, classes, theta, 0.8, 8.0), 0.2, a_decay, t)
        torch.testing.assert_close(loss_fn.thresholds, torch.tensor(theta), atol=2e-6, rtol=0)
    if a_decay == 0.0:
        assert max(theta) == pytest.approx(0.999)  # the cap was exercised
    assert theta[3] == pytest.approx(0.8, abs=1e-6)  # no predicted pixel: unchanged
    assert loss_fn.step.item() == 6


def test_warm_up_changes_history_weight():
    z1, z2 = random_pair(14, dtype=torch.float32, scale=4.0)
    plain, warm = TUFL(C, a_decay=0.0), TUFL(C, a_decay=0.5)
    plain(z1, z2)
    warm(z1, z2)
    # First step: a_t = 1 - 0.9 = 0.1 with warm-up, so warm moves 9x further from theta0.
    moved_plain = plain.thresholds - 0.8
    moved_warm = warm.thresholds - 0.8
    torch.testing.assert_close(moved_warm, moved_plain * 9, atol=1e-5, rtol=1e-3)


# ----------------------------------------------------------------- fast versus the slow reference


@pytest.mark.parametrize(
    "options",
    [dict(), dict(focal_type=2, ohem_ratio=0.5), dict(class_weights=[1.0, 2.0, 0.5, 1.5], detach_focal=True, b=0.2)],
)
def test_fused_loss_matches_reference_module_over_steps(options):
    g = torch.Generator().manual_seed(15)
    fast, slow = TUFL(C, **options), ReferenceTUFL(C, **options)
    for _ in range(4):
        z1 = (torch.randn(2, C, 16, 16, generator=g) * 3).requires_grad_()
        z2 = (torch.randn(2, C, 16, 16, generator=g) * 3).requires_grad_()
        valid = torch.rand(2, 16, 16, generator=g) > 0.1
        loss_fast = fast(z1, z2, valid)
        loss_fast.backward()
        grads = z1.grad.clone(), z2.grad.clone()
        z1.grad = z2.grad = None
        loss_slow = slow(z1, z2, valid)
        loss_slow.backward()
        assert loss_fast.item() == pytest.approx(loss_slow.item(), rel=1e-5)
        torch.testing.assert_close(grads[0], z1.grad, atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(grads[1], z2.grad, atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(fast.thresholds, slow.thresholds, atol=1e-6, rtol=0)
        torch.testing.assert_close(fast.last_pass_fraction, slow.last_pass_fraction.float())
    with torch.no_grad():
        assert fast.eval()(z1, z2, valid).item() == pytest.approx(slow.eval()(z1, z2, valid).item(), rel=1e-5)
