"""The Triton kernels' logic on the CPU, through Triton's interpreter (where Triton is
installed: PyTorch's CUDA builds ship it; CPU builds do not, and the test is skipped).
tests/test_cuda.py checks the compiled kernels on a GPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton")


def test_triton_kernels_in_the_interpreter_match_the_torch_operations():
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(
        [str(root / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    done = subprocess.run([sys.executable, str(root / "tests" / "triton_interpreter_check.py")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr
