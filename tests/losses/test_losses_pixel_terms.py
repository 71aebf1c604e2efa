"""TUFL's per-pixel terms, by every backend, against hand-written loops (values and gradients)."""

from __future__ import annotations

import math
import types

import pytest
import torch

from loss_loops import C, DEFAULTS, loop_pixel_losses, random_pair
from tufl.losses import TUFL, focal_pixel_terms
from tufl.losses.backends import triton as triton_backend
from tufl.losses.backends.fused import fused_pixel_terms as focal_consistency_terms


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
    _, conf, cls = focal_consistency_terms(z1, z2, *DEFAULTS)
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
    loss32, conf32, cls32 = focal_consistency_terms(z1, z2, *DEFAULTS)
    loss32.sum().backward()
    x1, x2 = z1.detach().double().requires_grad_(), z2.detach().double().requires_grad_()
    loss64, conf64, cls64 = focal_consistency_terms(x1, x2, *DEFAULTS)
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
    loss, conf, cls = focal_consistency_terms(z1, z2, 2.0, 2, lam, False)
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
    loss, _, _ = focal_consistency_terms(z1.detach(), z2, *DEFAULTS)
    loss.sum().backward()
    expected_z2 = z2.grad.clone()
    z2.grad = None
    pixels = loop_pixel_losses(z1.detach(), z2, 2.0, 1, [1.0] * C, False)
    sum(value for value, _, _ in pixels.values()).backward()
    torch.testing.assert_close(expected_z2, z2.grad, atol=1e-10, rtol=1e-8)
    with torch.no_grad():
        loss, _, _ = focal_consistency_terms(z1, z2, *DEFAULTS)
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
    loss, conf, cls = focal_consistency_terms(z1, z2, 2.0, 1, None, False)
    loss.sum().backward()
    p = torch.softmax(z1.detach()[0, :, 0, 0], 0)
    q = torch.softmax(z2.detach()[0, :, 0, 0], 0)
    assert cls.item() == 0 and conf.item() == pytest.approx(p[0].item())
    assert loss.item() == pytest.approx(-((1 - q[0]) ** 2 * (p * q.log()).sum()).item())
    log_p = p.log()
    entropy_grad = p * (log_p - (p * log_p).sum())  # d(-H)/dz = P (log P - sum P log P)
    torch.testing.assert_close(z1.grad[0, :, 0, 0], -entropy_grad)


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
    expected = focal_consistency_terms(z1, z2, *DEFAULTS)
    with pytest.warns(RuntimeWarning, match=r"Triton kernels failed on first use \(RuntimeError: no C compiler\)"):
        first = triton_backend.triton_pixel_terms(z1, z2, *DEFAULTS)
    second = triton_backend.triton_pixel_terms(z1, z2, *DEFAULTS)
    assert len(attempts) == 1
    for got in (first, second):
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    monkeypatch.setattr(triton_backend, "STATUS", triton_backend.KernelStatus())
    triton_backend.STATUS.worked = True
    with pytest.raises(RuntimeError, match="no C compiler"):
        triton_backend.triton_pixel_terms(z1, z2, *DEFAULTS)
