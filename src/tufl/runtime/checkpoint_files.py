"""Training checkpoints: atomic writes, ``weights_only`` reads, and RNG state capture.

A checkpoint is a plain dict of tensors and primitive values (loadable with
``torch.load(..., weights_only=True)``):

``format``, ``version``, ``iteration``, ``model`` (Segmentor state dict),
``model_config``, ``input_convention``, ``num_classes``, ``optimizer``,
``scaler``, ``losses`` (threshold states), ``rng``, ``data`` (loader positions),
``counters``, ``best``, ``config`` (the resolved config as a plain dict).
"""

from __future__ import annotations

import os
import re
import random
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from tufl.runtime.atomic import (WriteFailed, atomic_write, drop_frames, exception_chain, failure_errno,
                                 failure_reason, fsync_path)
from tufl.runtime.errors import WeightsError

CHECKPOINT_FORMAT = "tufl-checkpoint"
CHECKPOINT_VERSION = 1
LAST_NAME = "checkpoint_last.pt"
BEST_NAME = "checkpoint_best.pt"
PENDING_TAG = "new"  # checkpoint_last.new.pt: see pending_checkpoint


def older_checkpoint(path: str | Path, age: int) -> Path:
    """The ``age``-th previous version of a checkpoint: ``checkpoint_last.1.pt``, ``.2``, ..."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{age}{path.suffix}")


def pending_checkpoint(path: str | Path) -> Path:
    """Where a new version of ``path`` waits, complete, while the older ones are shifted:
    ``checkpoint_last.new.pt``. Only a complete, flushed file ever has this name, and it is
    newer than ``path``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{PENDING_TAG}{path.suffix}")


def checkpoint_versions(path: str | Path) -> list[Path]:
    """The complete versions of ``path`` that exist, newest first: a pending one (a save stopped
    between its write and its rename), ``path``, then its previous versions."""
    path = Path(path)
    ages = []
    for candidate in path.parent.glob(f"{path.stem}.*{path.suffix}"):
        middle = candidate.name[len(path.stem) + 1 : -len(path.suffix)]
        if middle.isdigit():
            ages.append(int(middle))
    versions = [pending_checkpoint(path), path, *(older_checkpoint(path, a) for a in sorted(ages))]
    return [p for p in versions if p.is_file()]


def save_checkpoint(path: str | Path, state: dict[str, Any], keep: int = 1) -> None:
    """Write ``state`` to ``path`` atomically and durably, keeping ``keep - 1`` previous versions.

    The order keeps a complete newest checkpoint under a name :func:`checkpoint_versions`
    lists at every instant: the new file is written under a temporary name, flushed and renamed
    to :func:`pending_checkpoint`; then the versions shift (``path`` becomes ``<name>.1.pt``,
    ``.1`` becomes ``.2``, ... the oldest beyond ``keep`` goes); then the pending file takes
    ``path``. A failure names ``path`` (:class:`~tufl.runtime.atomic.WriteFailed`) and leaves the
    earlier versions as they were; the failed file's space is given back before it propagates.
    """
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    pending = pending_checkpoint(path)
    try:
        atomic_write(pending, lambda handle: _torch_save(payload, handle))
    except WriteFailed as error:
        raise WriteFailed(path, error.reason, error.errno) from None
    if keep > 1 and path.is_file():
        _renamed(None, older_checkpoint(path, keep - 1), path)
        for age in range(keep - 2, 0, -1):
            if older_checkpoint(path, age).is_file():
                _renamed(older_checkpoint(path, age), older_checkpoint(path, age + 1), path)
        _renamed(path, older_checkpoint(path, 1), path)
    _renamed(pending, path, path)
    fsync_path(path.parent)


def finish_interrupted_save(path: str | Path) -> bool:
    """Give ``path`` its pending version, left complete by a save stopped before its rename
    (for files kept in one version, e.g. ``checkpoint_best.pt``); returns whether there was one."""
    pending = pending_checkpoint(path)
    if not pending.is_file():
        return False
    _renamed(pending, Path(path), Path(path))
    fsync_path(Path(path).parent)
    return True


def _torch_save(payload: dict[str, Any], handle: IO[bytes]) -> None:
    """``torch.save`` into an open file; a failed write becomes an OSError with the OS's reason
    (torch's zip writer reports one as a RuntimeError), without the frames that hold its writer."""
    try:
        torch.save(payload, handle)
    except (OSError, RuntimeError) as error:
        reason = failure_reason(error)
        if not any(isinstance(c, OSError) for c in exception_chain(error)):
            reason = f"the write failed; is the disk full? ({reason})"
        number = failure_errno(error)
        drop_frames(error)
        raise OSError(number, reason) from None


def _renamed(source: Path | None, target: Path, saving: Path) -> None:
    """Move ``source`` to ``target`` (None: delete ``target``); a failure names the checkpoint being saved."""
    try:
        if source is None:
            target.unlink(missing_ok=True)
        else:
            os.replace(source, target)
    except OSError as error:
        what = f"remove {target.name}" if source is None else f"rename {source.name} to {target.name}"
        raise WriteFailed(saving, f"cannot {what}: {error.strerror or error}", error.errno) from None


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
