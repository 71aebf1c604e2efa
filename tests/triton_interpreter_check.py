"""The Triton kernels on the CPU through Triton's interpreter (run by test_triton_interpreter.py
in a process of its own: ``TRITON_INTERPRET=1`` must be set before Triton is imported).

Checks, for several class counts and loss options, that the kernels give the torch
operations' loss, confidence, pseudo-class and gradients, and that reading the
logits through an address table gives the direct launch's results bit for bit; and
that the threshold-selection kernels give the sort's ``psi`` exactly. Prints ``ok``
at the end.
"""

from __future__ import annotations

import os

import torch

assert os.environ.get("TRITON_INTERPRET") == "1"
from tufl.losses import focal_terms, focal_triton, threshold_triton, thresholds  # noqa: E402


class _Launcher:
    """An autotuned kernel at one block size (the autotuner times on a GPU)."""

    def __init__(self, kernel, block: int) -> None:
        self.kernel, self.block = kernel, block

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.kernel.fn[grid](*args, BLOCK=self.block, **kwargs)


focal_triton._forward_kernel = _Launcher(focal_triton._forward_kernel, 32)
focal_triton._backward_kernel = _Launcher(focal_triton._backward_kernel, 32)
SHAPE = (2, 7, 9)  # 63 pixels: two blocks, the second one partly masked

for num_classes, gamma, focal_type, weighted, detach in [
    (19, 2.0, 1, False, False), (5, 0.0, 1, False, False), (7, 0.5, 2, True, False), (3, 3.0, 2, True, True),
    (1, 2.0, 1, False, False),
]:
    g = torch.Generator().manual_seed(num_classes)
    weak = 3 * torch.randn(SHAPE[0], num_classes, *SHAPE[1:], generator=g)
    strong = weak + torch.randn(weak.shape, generator=g)
    weak[0, :, 3, 4] = 1.25  # an exact tie of all classes
    upstream = torch.rand(SHAPE, generator=g)
    lam = (torch.rand(num_classes, generator=g) + 0.5) if weighted else None

    def run(kernels):
        focal_terms.triton_kernels = lambda *_: kernels
        w, s = weak.clone().requires_grad_(True), strong.clone().requires_grad_(True)
        loss, conf, cls = focal_terms.focal_consistency_terms(w, s, gamma, focal_type, lam, detach)
        (loss * upstream).sum().backward()
        return loss, conf, cls, w.grad, s.grad

    kernel, torch_ops = run(focal_triton), run(None)
    setting = (num_classes, gamma, focal_type, weighted, detach)
    assert torch.equal(kernel[2], torch_ops[2]) and kernel[2][0, 3, 4] == 0, setting
    tolerance = 2e-3 if gamma < 1 else 1e-4
    for a, b in zip(kernel[:2] + kernel[3:], torch_ops[:2] + torch_ops[3:]):
        a, b = a.detach(), b.detach()
        assert float((a - b).abs().max()) <= tolerance * float(b.abs().max()), setting

    flat = tuple(t.reshape(SHAPE[0], num_classes, -1).contiguous() for t in (weak, strong))
    table = torch.tensor([t.data_ptr() for t in flat], dtype=torch.int64)
    options, shape = (gamma, focal_type, detach), tuple(flat[0].shape)
    direct = focal_triton.launch_forward(flat, shape, lam, options, True)
    indirect = focal_triton.launch_forward(table, shape, lam, options, True)
    assert all(torch.equal(a, b) for a, b in zip(direct, indirect)), setting
    grad = upstream.reshape(SHAPE[0], -1)
    for want in ((True, True), (False, True), (True, False)):
        from_direct = focal_triton.launch_backward(flat, shape, lam, direct[2], direct[3], grad, want)
        from_table = focal_triton.launch_backward(table, shape, lam, indirect[2], indirect[3], grad, want)
        for a, b, wanted in zip(from_direct, from_table, want):
            assert (a is None and b is None) if not wanted else torch.equal(a, b), setting
    no_coefficients = focal_triton.launch_forward(flat, shape, lam, options, False)
    assert no_coefficients[3] is None and torch.equal(no_coefficients[0], direct[0]), setting

# Threshold selection: small blocks, so that each of the two programs loops over several.
threshold_triton._BLOCK = 64
for num_classes, n, min_confidence, b, d, skewed in [
    (6, 300, 0.0, 0.8, 8.0, False), (19, 1500, 1 / 20, 0.8, 8.0, False), (19, 1500, 1 / 20, 0.8, 8.0, True),
    (1, 50, 0.5, 0.5, 1.0, False), (64, 900, 1 / 65, 0.2, 3.0, False), (6, 300, 0.4, 0.0, 3.0, False),
    (6, 300, 0.4, 1.0, 1.0, True), (3, 200, 0.25, 0.5, 0.0, False), (6, 300, 0.4, 0.999, 0.0, False),
]:
    g = torch.Generator().manual_seed(n + num_classes)
    # Ties, also with theta; some below min_confidence (which the codes treat as equal to it).
    coarse = torch.randint(10, 101, (n,), generator=g).float() / 100
    if skewed:  # a trained network: most confidences within 1e-4 of 1 (equal high digits)
        fine = 1 - torch.rand(n, generator=g) * 1e-4
    else:
        fine = min_confidence + torch.rand(n, generator=g) * (1 - min_confidence)
    conf = torch.where(torch.rand(n, generator=g) < 0.4, coarse, fine)
    cls = torch.randint(0, max(num_classes - 1, 1), (n,), generator=g)  # the last class has no pixel
    theta = torch.rand(num_classes, generator=g) * 0.999
    theta[0] = conf[0] if num_classes == 1 else 0.0
    if num_classes > 2:
        theta[1], theta[2] = conf[cls == 1][0], 0.999
    if b == 1.0:  # thresholds from elsewhere: rank N_c + 1, capped at N_c
        theta[-2:] = 1.0
    setting = (num_classes, n, min_confidence, b, d, skewed)
    for valid in (None, torch.rand(n, generator=g) > 0.2, torch.zeros(n, dtype=torch.bool)):
        expected = thresholds.sorted_psi(conf, cls, valid, theta, b, d, min_confidence)
        got = thresholds._selected_psi(threshold_triton, conf, cls, valid, theta, b, d, min_confidence)
        assert torch.equal(got, expected), (setting, got, expected)
    assert thresholds._SELECTION.failure is None
# Pixels of no class (out of range) are left out, as invalid pixels are.
stray = cls.clone()
stray[:7], stray[7:9] = num_classes, -1
got = threshold_triton.radix_select_psi(conf, stray, None, theta, 0.5, 2.0, thresholds._code_bits(min_confidence))
expected = thresholds.sorted_psi(conf, cls, torch.arange(n) >= 9, theta, 0.5, 2.0, min_confidence)
assert torch.equal(got, expected), (got, expected)
empty = threshold_triton.radix_select_psi(torch.empty(0), torch.empty(0, dtype=torch.long), None, theta, 0.8, 8.0, 26)
assert torch.equal(empty, theta)
print("ok")
