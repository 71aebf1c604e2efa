"""The processes of ``tufl benchmark faults``: a ``tufl train`` segment watched through its
metrics log, the file-size limit that stands in for a full disk, and the bit-for-bit comparison
of two checkpoints."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from tufl.runtime.run_log import read_metrics


def limit_file_size(limit: int) -> None:  # runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


class Segment:
    """One ``tufl train --resume auto`` process, watched through its metrics log."""

    def __init__(self, config: Path, run_dir: Path, file_size_limit: int | None = None) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.run_dir = run_dir
        self.started = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tufl", "train", "--config", str(config), "--resume", "auto"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
            preexec_fn=(lambda: limit_file_size(file_size_limit)) if file_size_limit else None)

    def reached(self) -> int:
        """The last iteration this process logged (0 before it has rewritten the log it resumes)."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists() or path.stat().st_mtime < self.started:
            return 0
        return max((r["iter"] for r in read_metrics(self.run_dir, "train")), default=0)

    def signal_at(self, iteration: int, signum: int, timeout: float = 600) -> tuple[int, str]:
        """Send ``signum`` once the run has logged ``iteration``; returns (exit status, stderr)."""
        deadline = time.time() + timeout
        while self.proc.poll() is None and self.reached() < iteration and time.time() < deadline:
            time.sleep(0.01)
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.finish(timeout)

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err


def compare_states(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Names of the parts of two checkpoints that differ (empty: bit-identical)."""
    differ = [f"model.{k}" for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    differ += [f"losses.{k}" for k in a["losses"] if not torch.equal(a["losses"][k], b["losses"][k])]
    for key, state in a["optimizer"]["state"].items():
        other = b["optimizer"]["state"].get(key, {})
        differ += [f"optimizer.{key}.{n}" for n, v in state.items()
                   if not (isinstance(v, torch.Tensor) and torch.equal(v, other.get(n)))]
    for key in ("iteration", "data"):
        if a[key] != b[key]:
            differ.append(key)
    return differ
