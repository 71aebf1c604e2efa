"""TUFL on a GPU: every backend against the CPU, the Triton kernels against the fused backend, autocast."""

from __future__ import annotations

import pytest
import torch

from tufl.losses import TUFL
from tufl.losses.backends import fused, triton

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


def _logit_pair(seed: int = 0, shape=(2, 19, 24, 40)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    weak = 3 * torch.randn(shape, generator=g, dtype=torch.float64)
    strong = weak + torch.randn(shape, generator=g, dtype=torch.float64)
    valid = torch.rand(shape[0], *shape[2:], generator=g) > 0.1
    return weak, strong, valid


def _tufl_step(device: torch.device, dtype: torch.dtype, steps: int = 3, backend: str = "auto"):
    """Loss, strong-view gradient and thresholds after ``steps`` calls on ``device``."""
    loss_fn = TUFL(19, backend=backend).to(device)
    for seed in range(steps):
        weak, strong, valid = _logit_pair(seed)
        weak = weak.to(device, dtype)
        strong = strong.to(device, dtype).requires_grad_(True)
        loss = loss_fn(weak, strong, valid.to(device))
    loss.backward()
    return loss.detach().cpu().double(), strong.grad.cpu().double(), loss_fn.thresholds.cpu().double()


@pytest.mark.parametrize("backend", ["torch", "fused", "triton"])
def test_tufl_on_cuda_matches_cpu_float64(backend):
    cpu = _tufl_step(torch.device("cpu"), torch.float64, backend="torch")
    gpu = _tufl_step(CUDA, torch.float64, backend=backend)  # triton: float64 goes to the fused backend
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", ["torch", "fused", "triton"])
def test_tufl_on_cuda_matches_cpu_float32(backend):
    cpu = _tufl_step(torch.device("cpu"), torch.float32, backend="torch")
    gpu = _tufl_step(CUDA, torch.float32, backend=backend)
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "num_classes, gamma, focal_type, weighted, detach",
    [(19, 2.0, 1, False, False), (5, 0.0, 1, False, False), (33, 0.5, 2, True, False),
     (19, 3.0, 2, True, True), (2, 2.0, 2, False, False), (64, 1.5, 1, True, False)],
)
def test_triton_kernel_matches_the_fused_backend(num_classes, gamma, focal_type, weighted, detach):
    """On CUDA the fused loss runs Triton kernels (the backward recomputes from the logits).
    They give the torch operations' loss, confidence, pseudo-class (first maximum under
    exact ties, in range for NaN pixels) and gradients for an arbitrary upstream gradient."""
    pytest.importorskip("triton")
    g = torch.Generator().manual_seed(num_classes)
    shape = (2, num_classes, 37, 53)  # pixel count not a multiple of any block
    weak = 3 * torch.randn(shape, generator=g)
    strong = weak + torch.randn(shape, generator=g)
    weak[0, :, 3, 4] = 1.25  # an exact tie of all classes
    weak[1, :, 5, 6] = float("nan")
    upstream = torch.rand(2, 37, 53, generator=g)
    lam = (torch.rand(num_classes, generator=g) + 0.5).to(CUDA) if weighted else None
    assert triton.kernels_for(CUDA, torch.float32, num_classes) is not None  # the kernels run here

    def run(terms):
        w, s = weak.to(CUDA).requires_grad_(True), strong.to(CUDA).requires_grad_(True)
        loss, conf, cls = terms(w, s, gamma, focal_type, lam, detach)
        (loss * upstream.to(CUDA)).sum().backward()
        return loss, conf, cls, w.grad, s.grad

    kernel = run(triton.triton_pixel_terms)
    assert triton.STATUS.failure is None  # the kernels ran, no fallback
    torch_ops = run(fused.fused_pixel_terms)
    finite = torch.ones(2, 37, 53, dtype=torch.bool)
    finite[1, 5, 6] = False
    assert torch.equal(kernel[2][finite], torch_ops[2][finite]) and kernel[2][0, 3, 4] == 0
    assert 0 <= int(kernel[2][1, 5, 6]) < num_classes
    for a, b in zip(kernel[:2] + kernel[3:], torch_ops[:2] + torch_ops[3:]):
        if a.dim() == 4:
            a, b = a.movedim(1, -1), b.movedim(1, -1)
        a, b = a.cpu()[finite], b.cpu()[finite]
        tolerance = 2e-3 if gamma < 1 else 1e-4  # gamma < 1: the slope is infinite where Q_k = m
        assert float((a - b).abs().max()) <= tolerance * float(b.abs().max())


def test_tufl_under_bf16_autocast_is_computed_in_float32():
    weak, strong, valid = _logit_pair()
    reference = TUFL(19)(weak.float(), strong.float(), valid)
    loss_fn = TUFL(19).to(CUDA)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = loss_fn(weak.float().to(CUDA), strong.float().to(CUDA), valid.to(CUDA))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.cpu(), reference, rtol=1e-4, atol=1e-6)
