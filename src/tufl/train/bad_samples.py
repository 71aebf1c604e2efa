"""The account of bad training samples: skipped, named once, counted, bounded.

With ``data.skip_bad_files`` (the default) a training sample whose files are
unreadable or inconsistent is replaced by the next good one (see
:class:`tufl.data.base.SegDataset`). The worker that met it reports it in the
batch (``skipped``); :class:`BadSamples` collects those reports on every rank,
merges them over ranks when the run logs or checkpoints, names each file once,
counts them per domain (``metrics.jsonl``, ``bad_samples.json``, the end-of-run
summary) and stops the run with a clear error once more than
``data.max_bad_fraction`` of a domain's samples are bad. The account is saved in
the checkpoint, so a resumed run keeps counting where it stopped; a fresh run removes the
list an earlier run left in its folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist

from tufl.runtime.atomic import atomic_write_json
from tufl.data.io import DataError
from tufl.runtime.distributed import DistContext

DOMAINS = ("source", "target")
FILE_NAME = "bad_samples.json"


class TooManyBadSamples(DataError):
    """More than the allowed fraction of a training dataset is bad."""


class BadSamples:
    """Bad files met by the run, per domain (see the module docstring)."""

    def __init__(self, sizes: dict[str, int], max_fraction: float, ctx: DistContext,
                 say: Callable[[str], None] = print) -> None:
        self.sizes = sizes
        self.max_fraction = max_fraction
        self.ctx = ctx
        self.say = say
        self.files: dict[str, dict[str, str]] = {d: {} for d in DOMAINS}
        self._pending: list[tuple[str, str, str]] = []  # (domain, path, problem) met since the last merge

    def take(self, domain: str, batch: dict[str, Any]) -> dict[str, Any]:
        """Remove the ``skipped`` reports from ``batch`` (kept for the next merge); returns the batch."""
        for text in batch.pop("skipped", ()) or ():
            for line in filter(None, text.split("\n")):
                path, _, problem = line.partition("\t")
                self._pending.append((domain, path, problem))
        return batch

    def note(self, domain: str, met: list[tuple[str, str]]) -> None:
        """Bad files met in this process outside the loaders (e.g. long-tail instance fetches)."""
        self._pending.extend((domain, path, problem) for path, problem in met)

    def merge(self) -> None:
        """Gather the new reports of every rank (collective under DDP), name the new files, check the bound."""
        pending, self._pending = self._pending, []
        if self.ctx.enabled and dist.is_initialized():
            gathered: list[Any] = [None] * self.ctx.world_size
            dist.all_gather_object(gathered, pending)
            pending = [item for part in gathered for item in part]
        for domain, path, problem in pending:
            if path in self.files[domain]:
                continue
            self.files[domain][path] = problem
            if self.ctx.is_main:
                count, size = len(self.files[domain]), self.sizes[domain]
                self.say(f"[tufl] skipped a bad {domain} sample: {path}: {problem} "
                         f"({count} of {size} {domain} samples so far)")
        for domain in DOMAINS:
            self._check_bound(domain)

    def _check_bound(self, domain: str) -> None:
        count, size = len(self.files[domain]), self.sizes[domain]
        if size and count / size > self.max_fraction:
            listed = "; ".join(list(self.files[domain])[:5]) + (" ..." if count > 5 else "")
            raise TooManyBadSamples(
                f"{count} of {size} {domain} samples ({100 * count / size:.2f} %) are unreadable or inconsistent, "
                f"more than data.max_bad_fraction={self.max_fraction}: {listed}. Check them with "
                f"`tufl check-data`, fix or remove them, or raise data.max_bad_fraction"
            )

    def counts(self) -> dict[str, int]:
        return {d: len(self.files[d]) for d in DOMAINS}

    def summary_note(self, run_dir: Path) -> str:
        """``; skipped bad samples: ...`` for the end-of-run line ("" when there were none)."""
        counts = self.counts()
        if not any(counts.values()):
            return ""
        return (f"; skipped bad samples: source {counts['source']}, target {counts['target']} "
                f"(listed in {Path(run_dir) / FILE_NAME})")

    def start(self, run_dir: Path, resumed: bool) -> None:
        """At a run's start (main rank): a fresh run removes the ``bad_samples.json`` an earlier run
        left in ``run_dir``; a resumed one keeps it (its account, restored from the checkpoint, grows)."""
        if not resumed:
            (Path(run_dir) / FILE_NAME).unlink(missing_ok=True)

    def write(self, run_dir: Path) -> None:
        """``bad_samples.json``: every bad file with its problem, per domain (main rank)."""
        if self.ctx.is_main and any(self.files.values()):
            atomic_write_json(Path(run_dir) / FILE_NAME, {"counts": self.counts(), "files": self.files})

    def state_dict(self) -> dict[str, dict[str, str]]:
        return {d: dict(files) for d, files in self.files.items()}

    def load_state_dict(self, state: dict[str, dict[str, str]]) -> None:
        self.files = {d: dict(state.get(d, {})) for d in DOMAINS}
