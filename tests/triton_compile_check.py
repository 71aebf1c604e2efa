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

from tufl.losses import focal_triton, threshold_triton

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


for indirect in (False, True):
    table = {"table_ptr": "*i64"}
    compile_for_sm90(focal_triton._forward_kernel, {**table, "cls_ptr": "*i64", "gamma": "fp32"}, {
        "BLOCK": 1024, "FOCAL_TYPE": 1, "GAMMA_KIND": 1, "DETACH_FOCAL": False, "HAS_WEIGHTS": True, "SAVE": True,
        "INDIRECT": indirect})
    compile_for_sm90(focal_triton._backward_kernel, {**table, "cls_ptr": "*i64"}, {
        "BLOCK": 1024, "HAS_WEIGHTS": True, "WANT_WEAK": True, "WANT_STRONG": True, "INDIRECT": indirect})
for rows, digit_bits in ((32, 6), (64, 5)):
    shape = {"CLASS_ROWS": rows, "DIGIT_BITS": digit_bits}
    selection = {"value_ptr": "*i32", "class_ptr": "*i8", "hist_ptr": "*i32", "state_ptr": "*i32",
                 "weights_ptr": "*fp64", "b_bits": "i64", "psi_ptr": "*fp32"}
    compile_for_sm90(threshold_triton._first_pass_kernel, {**selection, "cls_ptr": "*i64", "valid_ptr": "*u8"},
                     {**shape, "BLOCK": threshold_triton._BLOCK, "HAS_VALID": True})
    for from_counts in (True, False):
        compile_for_sm90(threshold_triton._next_pass_kernel, selection,
                         {**shape, "BLOCK": threshold_triton._BLOCK, "FROM_COUNTS": from_counts})
        compile_for_sm90(threshold_triton._last_digit_kernel, selection, {**shape, "FROM_COUNTS": from_counts})
print("ok")
