"""The Triton kernels on the CPU through Triton's interpreter (run by test_triton_interpreter.py
in a process of its own: ``TRITON_INTERPRET=1`` must be set before Triton is imported).

Checks, for several class counts and loss options, that the kernels give the fused
backend's loss, confidence, pseudo-class and gradients, and that the backward needs
only the gradients asked for. Prints ``ok`` at the end.
"""

from __future__ import annotations

import os

import torch

assert os.environ.get("TRITON_INTERPRET") == "1"
from tufl.losses.backends import triton as triton_backend  # noqa: E402
from tufl.losses.backends import triton_kernels as focal_triton  # noqa: E402
from tufl.losses.backends.fused import fused_pixel_terms  # noqa: E402


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

    def run(terms):
        w, s = weak.clone().requires_grad_(True), strong.clone().requires_grad_(True)
        loss, conf, cls = terms(w, s, gamma, focal_type, lam, detach)
        (loss * upstream).sum().backward()
        return loss, conf, cls, w.grad, s.grad

    triton_backend.kernels_for = lambda *_: focal_triton  # the interpreter runs on the CPU
    kernel, torch_ops = run(triton_backend.triton_pixel_terms), run(fused_pixel_terms)
    assert triton_backend.STATUS.failure is None
    setting = (num_classes, gamma, focal_type, weighted, detach)
    assert torch.equal(kernel[2], torch_ops[2]) and kernel[2][0, 3, 4] == 0, setting
    tolerance = 2e-3 if gamma < 1 else 1e-4
    for a, b in zip(kernel[:2] + kernel[3:], torch_ops[:2] + torch_ops[3:]):
        a, b = a.detach(), b.detach()
        assert float((a - b).abs().max()) <= tolerance * float(b.abs().max()), setting

    flat = tuple(t.reshape(SHAPE[0], num_classes, -1).contiguous() for t in (weak, strong))
    options, shape = (gamma, focal_type, detach), tuple(flat[0].shape)
    direct = focal_triton.launch_forward(flat, shape, lam, options, True)
    grad = upstream.reshape(SHAPE[0], -1)
    both = focal_triton.launch_backward(flat, shape, lam, direct[2], direct[3], grad, (True, True))
    for want in ((False, True), (True, False)):
        some = focal_triton.launch_backward(flat, shape, lam, direct[2], direct[3], grad, want)
        for a, b, wanted in zip(some, both, want):
            assert (a is None) if not wanted else torch.equal(a, b), setting
    no_coefficients = focal_triton.launch_forward(flat, shape, lam, options, False)
    assert no_coefficients[3] is None and torch.equal(no_coefficients[0], direct[0]), setting
print("ok")
