"""TUFL against hand-written references with explicit loops (values, gradients, thresholds)."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch

from tufl.bench.loss_reference import ReferenceTUFL
from tufl.losses import TUFL, focal_pixel_terms, order_statistic_psi
from tufl.losses.backends import triton as triton_backend
from tufl.losses.backends.fused import fused_pixel_terms as focal_consistency_terms

C = 4


# ----------------------------------------------------------------- loop references


def softmax_list(logits: list[torch.Tensor]) -> list[torch.Tensor]:
    exps = [torch.exp(v) for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


def loop_pixel_losses(z1, z2, gamma, focal_type, lam, detach_focal):
    """Per-pixel PAPER.md loss with Python loops over pixels and classes.

    Returns a dict ``(b, h, w) -> (loss scalar tensor, confidence float, pseudo-class int)``.
    """
    batch, classes, height, width = z1.shape
    out = {}
    for b in range(batch):
        for h in range(height):
            for w in range(width):
                p = softmax_list([z1[b, c, h, w] for c in range(classes)])
                q = softmax_list([z2[b, c, h, w] for c in range(classes)])
                values = [float(v.detach()) for v in p]
                k = values.index(max(values))
                if focal_type == 1:
                    focal = (1 - q[k]).abs() ** gamma
                else:
                    focal = (p[k].detach() - q[k]).abs() ** gamma
                if detach_focal:
                    focal = focal.detach()
                loss = 0
                for c in range(classes):
                    sg_p = p[c].detach()
                    loss = loss + lam[c] * (sg_p * (torch.log(sg_p) - focal * torch.log(q[c])) - p[c] * torch.log(p[c]))
                out[(b, h, w)] = (loss, values[k], k)
    return out


def loop_masked_mean(pixels, valid, thresholds, ohem_ratio):
    """Mean over valid pixels above their class threshold, after OHEM; 0 if none."""
    passing = [loss for key, (loss, m, k) in pixels.items() if valid[key] and m > thresholds[k]]
    passing.sort(key=lambda v: float(v.detach()), reverse=True)
    kept = passing[: math.ceil(ohem_ratio * len(passing))]
    if not kept:
        return None
    return sum(kept) / len(kept)


def literal_psi(confs, classes, theta, b, d):
    """PAPER.md's pseudo-code, literally."""
    psi = list(theta)
    for c in range(len(theta)):
        s = [m for m, k in zip(confs, classes) if k == c]
        if not s:
            continue
        n_c = len(s)
        s = sorted(s + [theta[c]], reverse=True)
        psi[c] = s[math.floor((n_c + 1) * b * theta[c] ** d)]
    return psi


def literal_update(theta, psi, a, a_decay, t):
    a_t = 1 - a * math.exp(-t * a_decay) if a_decay > 0 else a
    # Stored as float32, like the module's buffer.
    return [float(np.float32(min(a_t * th + (1 - a_t) * ps, 0.999))) for th, ps in zip(theta, psi)]


def pixel_stats(z1, valid):
    """Confidences and pseudo-classes of the valid pixels, in float32 as TUFL sees them."""
    p = torch.softmax(z1.float(), dim=1)
    conf, cls = p.max(dim=1)
    return [float(v) for v in conf[valid]], [int(v) for v in cls[valid]]


def random_pair(seed, shape=(2, C, 3, 3), scale=2.5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z1 = (torch.randn(shape, generator=g, dtype=dtype) * scale).requires_grad_()
    z2 = (torch.randn(shape, generator=g, dtype=dtype) * scale).requires_grad_()
    return z1, z2


# ----------------------------------------------------------------- per-pixel loss


@pytest.mark.parametrize("focal_type", [1, 2])
@pytest.mark.parametrize("detach_focal", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 2.0, 1.5])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("terms", [focal_consistency_terms, focal_pixel_terms], ids=["fused", "torch"])
def test_per_pixel_terms_match_loop_reference(focal_type, detach_focal, gamma, weighted, terms):
    """Both the fused backend and the definition (the torch backend) against a per-pixel loop."""
    z1, z2 = random_pair(1, shape=(2, C, 2, 3))
    lam = torch.tensor([0.5, 2.0, 1.0, 0.25], dtype=torch.float64) if weighted else None
    upstream = torch.randn(2, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    loss, conf, cls = terms(z1, z2, gamma, focal_type, lam, detach_focal)
    (loss * upstream).sum().backward()
    got = (loss.detach(), conf, cls, z1.grad.clone(), z2.grad.clone())

    z1.grad = z2.grad = None
    pixels = loop_pixel_losses(z1, z2, gamma, focal_type, [1.0] * C if lam is None else lam, detach_focal)
    total = sum(pixels[(b, h, w)][0] * upstream[b, h, w] for (b, h, w) in pixels)
    total.backward()
    for (b, h, w), (value, m, k) in pixels.items():
        assert got[0][b, h, w].item() == pytest.approx(value.item(), abs=1e-10)
        assert got[1][b, h, w].item() == pytest.approx(m, abs=1e-12)
        assert got[2][b, h, w].item() == k
    torch.testing.assert_close(got[3], z1.grad, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(got[4], z2.grad, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("num_classes", [3, 24, 25, 53, 54])  # both sides of the exact power-of-two sums
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pseudo_class_is_the_first_maximum_and_confidence_its_probability(num_classes, dtype):
    """Integer logits from a small range give many exact ties: the pseudo-class is the first
    of the tied maxima, as with a loop, for every class count (the power-of-two codes and
    the fallback). A NaN pixel still gets a class in range."""
    g = torch.Generator().manual_seed(num_classes)
    z1 = torch.randint(0, 3, (2, num_classes, 4, 5), generator=g).to(dtype)
    z1[0, :, 0, 0] = float("nan")
    z2 = torch.randn(z1.shape, generator=g, dtype=dtype)
    _, conf, cls = focal_consistency_terms(z1, z2)
    for b in range(2):
        for h in range(4):
            for w in range(5):
                values = z1[b, :, h, w].tolist()
                if b == 0 and h == 0 and w == 0:
                    assert 0 <= int(cls[b, h, w]) < num_classes
                    continue
                assert int(cls[b, h, w]) == values.index(max(values))
                expected = 1.0 / sum(math.exp(v - max(values)) for v in values)
                assert float(conf[b, h, w]) == pytest.approx(expected, rel=1e-6)


def test_large_float32_logits_stay_finite_and_match_float64():
    z1, z2 = random_pair(30, shape=(2, C, 3, 4), scale=2000.0, dtype=torch.float32)
    z2.data += 5000.0  # a large common offset: only the shift keeps exp finite
    loss32, conf32, cls32 = focal_consistency_terms(z1, z2)
    loss32.sum().backward()
    x1, x2 = z1.detach().double().requires_grad_(), z2.detach().double().requires_grad_()
    loss64, conf64, cls64 = focal_consistency_terms(x1, x2)
    loss64.sum().backward()
    assert torch.isfinite(loss32).all() and torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    assert torch.equal(cls32, cls64)
    torch.testing.assert_close(loss32.double(), loss64, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(z2.grad.double(), x2.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("chunk_pixels", [1, 4, 6, 13])  # partial chunks, one image, two images
def test_cpu_chunking_does_not_change_results(monkeypatch, chunk_pixels):
    import tufl.losses.backends.fused as focal_terms

    z1, z2 = random_pair(16, shape=(3, C, 2, 3))
    lam = torch.tensor([0.5, 2.0, 1.0, 0.25], dtype=torch.float64)
    upstream = torch.randn(3, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(17))
    monkeypatch.setattr(focal_terms, "CPU_CHUNK_ELEMENTS", C * chunk_pixels)
    loss, conf, cls = focal_consistency_terms(z1, z2, 2.0, 2, lam)
    (loss * upstream).sum().backward()
    got = (loss.detach(), conf, cls, z1.grad.clone(), z2.grad.clone())

    z1.grad = z2.grad = None
    pixels = loop_pixel_losses(z1, z2, 2.0, 2, lam, False)
    sum(pixels[key][0] * upstream[key] for key in pixels).backward()
    for key, (value, m, k) in pixels.items():
        assert got[0][key].item() == pytest.approx(value.item(), abs=1e-10)
        assert got[1][key].item() == pytest.approx(m, abs=1e-12) and got[2][key].item() == k
    torch.testing.assert_close(got[3], z1.grad, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(got[4], z2.grad, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("backend", ["fused", "triton", "auto"])
def test_every_backend_trains_like_the_definition(backend):
    """Loss, gradients, thresholds and pass fraction of each backend equal the ``torch``
    backend (the definition, autograd) over two training steps with a valid mask and an
    eval step. On the CPU ``triton`` and ``auto`` run the fused backend."""
    results = []
    for name in ("torch", backend):
        loss_fn = TUFL(C, class_weights=[0.5, 2.0, 1.0, 0.25], backend=name, loss_floor=1e-8)
        outputs = []
        for seed in (20, 21, 22):  # two training steps (thresholds move), then eval
            loss_fn.train(seed < 22)
            z1, z2 = random_pair(seed, shape=(2, C, 5, 7))
            z1.data[0, :, 0, 0] = 1.0  # a tie: the first class is the pseudo-class
            valid = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(seed)) > 0.2
            loss = loss_fn(z1, z2, valid)
            loss.backward()
            outputs += [loss.detach(), z1.grad, z2.grad, loss_fn.thresholds.clone(), loss_fn.last_pass_fraction]
        results.append(outputs)
    assert int(loss_fn.step) == 2
    for definition, fast in zip(*results):
        torch.testing.assert_close(fast, definition, atol=1e-10, rtol=1e-8)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown TUFL backend 'cuda_graphs'"):
        TUFL(C, backend="cuda_graphs")


def test_gradient_only_for_the_views_that_need_it():
    z1, z2 = random_pair(18)
    loss, _, _ = focal_consistency_terms(z1.detach(), z2)
    loss.sum().backward()
    expected_z2 = z2.grad.clone()
    z2.grad = None
    pixels = loop_pixel_losses(z1.detach(), z2, 2.0, 1, [1.0] * C, False)
    sum(value for value, _, _ in pixels.values()).backward()
    torch.testing.assert_close(expected_z2, z2.grad, atol=1e-10, rtol=1e-8)
    with torch.no_grad():
        loss, _, _ = focal_consistency_terms(z1, z2)
    assert loss.grad_fn is None


def test_focal_factor_gradient_depends_on_detach_option():
    z1, z2 = random_pair(2)
    grads = []
    for detach in (False, True):
        z2.grad = None
        loss, _, _ = focal_consistency_terms(z1, z2, 2.0, 1, None, detach)
        loss.sum().backward()
        grads.append(z2.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_value_is_focal_cross_entropy_and_weak_gradient_is_entropy_gradient():
    # Hand-derived: the value is -w * sum_c P_c log Q_c; dl/dz1 is the gradient of -H(P).
    z1 = torch.tensor([[[[2.0]], [[0.0]], [[-1.0]]]], dtype=torch.float64, requires_grad=True)
    z2 = torch.tensor([[[[1.0]], [[0.5]], [[0.0]]]], dtype=torch.float64, requires_grad=True)
    loss, conf, cls = focal_consistency_terms(z1, z2, 2.0, 1)
    loss.sum().backward()
    p = torch.softmax(z1.detach()[0, :, 0, 0], 0)
    q = torch.softmax(z2.detach()[0, :, 0, 0], 0)
    assert cls.item() == 0 and conf.item() == pytest.approx(p[0].item())
    assert loss.item() == pytest.approx(-((1 - q[0]) ** 2 * (p * q.log()).sum()).item())
    log_p = p.log()
    entropy_grad = p * (log_p - (p * log_p).sum())  # d(-H)/dz = P (log P - sum P log P)
    torch.testing.assert_close(z1.grad[0, :, 0, 0], -entropy_grad)


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
    loss_fn = TUFL(C, **options).eval()
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
    loss_fn = TUFL(C, theta0=0.6, a=0.2, b=0.5, d=2.0)
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


def test_failing_triton_kernels_fall_back_to_the_fused_backend_with_a_warning(monkeypatch):
    """If the Triton kernels fail on first use (no compiler, an unsupported GPU), the loss
    warns once, gives the fused backend's results and does not try them again; once
    they have worked, a later failure is raised."""
    attempts = []

    class Failing(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            attempts.append(1)
            raise RuntimeError("no C compiler")

    monkeypatch.setattr(triton_backend, "STATUS", triton_backend.KernelStatus())
    kernels = types.SimpleNamespace(FocalConsistencyTriton=Failing)
    monkeypatch.setattr(triton_backend, "kernels_for",
                        lambda *_: None if triton_backend.STATUS.failure else kernels)
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(2, C, 5, 6, generator=g), torch.randn(2, C, 5, 6, generator=g)
    expected = focal_consistency_terms(z1, z2)
    with pytest.warns(RuntimeWarning, match=r"Triton kernels failed on first use \(RuntimeError: no C compiler\)"):
        first = triton_backend.triton_pixel_terms(z1, z2)
    second = triton_backend.triton_pixel_terms(z1, z2)
    assert len(attempts) == 1
    for got in (first, second):
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    monkeypatch.setattr(triton_backend, "STATUS", triton_backend.KernelStatus())
    triton_backend.STATUS.worked = True
    with pytest.raises(RuntimeError, match="no C compiler"):
        triton_backend.triton_pixel_terms(z1, z2)
