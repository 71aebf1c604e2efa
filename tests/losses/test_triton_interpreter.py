"""The Triton kernels without a GPU, where Triton is installed (PyTorch's CUDA builds ship it;
CPU builds do not, and the tests are skipped): their logic through Triton's interpreter,
and their compilation for an H100. tests/test_cuda.py runs them on a GPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton")
ROOT = Path(__file__).resolve().parents[2]


def _run_check(script: str, interpret: bool) -> None:
    """Run ``tests/scripts/<script>`` in a process of its own; it prints ``ok`` when every check passed."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    if interpret:
        env["TRITON_INTERPRET"] = "1"  # read when Triton is imported
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "scripts" / script)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr


def test_triton_kernels_in_the_interpreter_match_the_torch_operations():
    _run_check("triton_interpreter_check.py", interpret=True)


def test_triton_kernels_compile_for_an_h100():
    _run_check("triton_compile_check.py", interpret=False)
