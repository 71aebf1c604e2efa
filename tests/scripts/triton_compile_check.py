"""Compile every Triton kernel for an H100 (sm_90) without a GPU (run by test_triton_interpreter.py).

The interpreter runs the kernels' logic but not the GPU compiler: an operation the
backend cannot lower, or a layout it rejects, shows only here (or on a GPU). Each
kernel is compiled with the types and options the loss launches it with. Prints
each kernel's name, then ``ok``.
"""

from __future__ import annotations

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime import JITFunction

from tufl.losses.backends import triton_kernels as focal_triton

TARGET = GPUTarget("cuda", 90, 32)


def compile_for_sm90(kernel, types: dict[str, str], constants: dict[str, object], num_warps: int = 8) -> None:
    """Compile ``kernel``: arguments named ``*_ptr`` are float32 pointers and others 32-bit
    integers unless ``types`` says otherwise; ``constants`` gives every ``tl.constexpr``."""
    function = kernel if isinstance(kernel, JITFunction) else kernel.fn  # an autotuned kernel wraps it
    signature = {}
    for name in function.arg_names:
        default = "*fp32" if name.endswith("_ptr") else "i32"
        signature[name] = "constexpr" if name in constants else types.get(name, default)
    triton.compile(ASTSource(fn=function, signature=signature, constexprs=constants), target=TARGET,
                   options={"num_warps": num_warps})
    print(function.__name__)


compile_for_sm90(focal_triton._forward_kernel, {"cls_ptr": "*i64", "gamma": "fp32"}, {
    "BLOCK": 1024, "FOCAL_TYPE": 1, "GAMMA_KIND": 1, "DETACH_FOCAL": False, "HAS_WEIGHTS": True, "SAVE": True})
compile_for_sm90(focal_triton._backward_kernel, {"cls_ptr": "*i64"}, {
    "BLOCK": 1024, "HAS_WEIGHTS": True, "WANT_WEAK": True, "WANT_STRONG": True})
print("ok")
