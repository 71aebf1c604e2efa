"""Training checkpoints: atomic writes, ``weights_only`` reads, and RNG state capture.

A checkpoint is a plain dict of tensors and primitive values (loadable with
``torch.load(..., weights_only=True)``):

``format``, ``version``, ``iteration``, ``model`` (Segmentor state dict),
``model_config``, ``input_convention``, ``num_classes``, ``optimizer``,
``scaler``, ``losses`` (threshold states), ``rng``, ``data`` (loader positions),
``counters``, ``best``, ``config`` (the resolved config as a plain dict).
"""

from __future__ import annotations

import errno
import os
import re
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tufl.runtime.atomic import atomic_path
from tufl.runtime.errors import WeightsError

CHECKPOINT_FORMAT = "tufl-checkpoint"
CHECKPOINT_VERSION = 1
LAST_NAME = "checkpoint_last.pt"
BEST_NAME = "checkpoint_best.pt"


def older_checkpoint(path: str | Path, age: int) -> Path:
    """The ``age``-th previous version of a checkpoint: ``checkpoint_last.1.pt``, ``.2``, ..."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{age}{path.suffix}")


def checkpoint_versions(path: str | Path) -> list[Path]:
    """``path`` and its previous versions that exist, newest first."""
    path = Path(path)
    ages = []
    for candidate in path.parent.glob(f"{path.stem}.*{path.suffix}"):
        middle = candidate.name[len(path.stem) + 1 : -len(path.suffix)]
        if middle.isdigit():
            ages.append(int(middle))
    return [p for p in [path, *(older_checkpoint(path, a) for a in sorted(ages))] if p.is_file()]


def save_checkpoint(path: str | Path, state: dict[str, Any], keep: int = 1) -> None:
    """Write ``state`` atomically and durably (temporary file, fsync, rename, fsync).

    With ``keep > 1`` the previous ``keep - 1`` versions stay beside it
    (``<name>.1.pt`` the newest), shifted once the new file is complete, so that a
    damaged last checkpoint still leaves one to resume from.
    """
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    with atomic_path(path) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as error:  # torch's zip writer reports a full disk as a RuntimeError
            detail = str(error).splitlines()[0] if str(error) else "no detail"
            raise OSError(errno.EIO, f"the write failed; is the disk full? ({detail})") from error
        if keep > 1 and path.is_file():
            older_checkpoint(path, keep - 1).unlink(missing_ok=True)
            for age in range(keep - 2, 0, -1):
                if older_checkpoint(path, age).is_file():
                    os.replace(older_checkpoint(path, age), older_checkpoint(path, age + 1))
            os.replace(path, older_checkpoint(path, 1))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a tufl checkpoint with ``weights_only=True``; clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read checkpoint {path}: {load_problem(exc)}") from exc
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not a tufl checkpoint")
    return obj


def load_problem(error: Exception) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in one line (torch's own
    message advises loading with ``weights_only=False``, which would run code from the file)."""
    text = str(error)
    if "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        holds = f" (it holds the Python object {found.group(1)})" if found else ""
        return (f"not a tufl checkpoint or weight file: it cannot be read as plain tensors{holds}; tufl reads "
                "only files that need no code to load")
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"not a PyTorch weight file, or damaged ({first})"


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states as weights_only-safe values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuples(state["python"]))
    np_state = state["numpy"]
    np.random.set_state((
        "MT19937",
        np_state["keys"].numpy().astype(np.uint32),
        np_state["pos"],
        np_state["has_gauss"],
        np_state["cached_gaussian"],
    ))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
