"""``tufl --version`` and ``python -m tufl --version``: the package's version, exit status 0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tufl
from tufl.cli import main

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _declared_version() -> str:
    return re.search(r'^version = "([^"]+)"', PYPROJECT.read_text(), re.MULTILINE).group(1)


def test_version_flag_prints_the_package_version(capsys):
    assert tufl.__version__ == _declared_version()
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"tufl {_declared_version()}\n"
    assert main(["--help"]) == 0 and "--version" in capsys.readouterr().out


def test_python_m_tufl_version():
    done = subprocess.run([sys.executable, "-m", "tufl", "--version"], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"tufl {_declared_version()}\n", "")
