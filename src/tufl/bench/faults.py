"""``tufl benchmark faults``: a short CPU run put through what clusters and disks do to runs.

One stage-one run on generated scenes is trained straight through (the
reference). The same run is then trained in segments, each started with
``tufl train --resume auto`` and ended by a fault:

* SIGKILL at random iterations (nothing caught: the run continues from its last
  checkpoint; at most ``train.checkpoint_every`` iterations are redone);
* the last checkpoint truncated after a kill (resume must fall back to the one before);
* a full disk (the process's file-size limit, ``RLIMIT_FSIZE``, set below the size of a
  checkpoint: every write of one fails as on a full disk; the run must stop with an
  error naming the file and leave the previous checkpoints loadable);
* SIGTERM (the run must finish the iteration, checkpoint it and exit with status 3);

and finally trained to the end. The check passes when the final weights, TUFL
thresholds, optimiser state and data positions equal the reference bit for bit, no
fault left an unreadable checkpoint, and no temporary file is left at the end (a
SIGKILL during a write leaves one; the next start removes it).

Then the probes of :mod:`tufl.bench.fault_probes` and :mod:`tufl.bench.state_probes` (a real
full filesystem, a decompression bomb, two runs on one folder, a NaN learning rate, a kill
inside a checkpoint rotation, a half-overwritten pseudo-label folder) run against the same
reference; every fault is reported survived or not, with what was lost.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tufl.bench import fault_probes, state_probes
from tufl.bench.fault_process import Segment, compare_states
from tufl.runtime import checkpoint_files as ckpt
from tufl.runtime.stop_signals import PREEMPTED_EXIT_STATUS


def run_config(data: Path, out: Path, iters: int) -> dict[str, Any]:
    """A tiny deterministic BiSeNet stage-one run on the generated scenes."""
    size = [64, 32]
    return {
        "experiment": {"name": "faults", "output_dir": str(out), "mode": "stage1", "device": "cpu", "seed": 5},
        "model": {"arch": "bisenet", "freeze_bn": "none", "num_classes": 19},
        "data": {"source": {"name": "gta5", "root": str(data / "gta5_like")},
                 "target": {"name": "cityscapes", "root": str(data / "cityscapes_like")},
                 "val": None, "batch_size": 2, "num_workers": 1,
                 "source_aug": {"crop_size": size}, "target_views": {"crop_size": size}},
        "optim": {"lr": 0.01},
        "train": {"iters": iters, "log_every": 1, "checkpoint_every": 3, "keep_checkpoints": 2,
                  "deterministic": True, "progress": False, "tensorboard": False},
    }


def _checkpoint_iteration(run_dir: Path) -> int:
    """The iteration a resume continues from: that of the newest readable checkpoint (0: none)."""
    for path in ckpt.checkpoint_versions(run_dir / ckpt.LAST_NAME):
        try:
            return int(ckpt.load_checkpoint(path)["iteration"])
        except Exception:
            continue
    return 0


def _damage_report(run_dir: Path, planted: set[int] = frozenset()) -> dict[str, int]:
    """Unreadable checkpoints (but the one the check truncated itself: inode in ``planted``)
    and temporary files left in the run folder."""
    unreadable = 0
    for path in ckpt.checkpoint_versions(run_dir / ckpt.LAST_NAME):
        if path.stat().st_ino in planted:
            continue
        try:
            ckpt.load_checkpoint(path)
        except Exception:
            unreadable += 1
    return {"unreadable_checkpoints": unreadable, "temporary_files": len(list(run_dir.glob(".*.tmp")))}


def _fault_plan(kills: int) -> tuple[list[str], int]:
    """The faults in order (a full disk second, SIGTERM last) and the index of the kill after
    which the last checkpoint is truncated (-1: none)."""
    plan = ["SIGKILL"] * kills
    plan.insert(min(1, len(plan)), "disk full")
    plan.append("SIGTERM")
    truncate_after = plan.index("SIGKILL", plan.index("disk full")) if plan.count("SIGKILL") > 1 else -1
    return plan, truncate_after


def _disk_full(config: Path, run_dir: Path) -> dict[str, Any]:
    """A segment whose checkpoint writes fail as on a full disk: it must stop naming the file."""
    size = max(p.stat().st_size for p in ckpt.checkpoint_versions(run_dir / ckpt.LAST_NAME))
    status, err = Segment(config, run_dir, file_size_limit=size // 2).finish()
    message = next((line for line in err.splitlines() if line.startswith("error:")), "")
    return {"exit_status": status, "message": message[:160],
            "stopped_cleanly": status == 1 and str(run_dir / ckpt.LAST_NAME) in message}


def _signalled(config: Path, run_dir: Path, at: int, signum: int, expected_status: int) -> dict[str, Any]:
    """A segment sent ``signum`` once it has logged iteration ``at``."""
    status, _ = Segment(config, run_dir).signal_at(at, signum)
    return {"signal_at": at, "exit_status": status, "checkpoint": _checkpoint_iteration(run_dir),
            "stopped_cleanly": status == expected_status}


def _truncate_last(run_dir: Path, planted: set[int]) -> dict[str, Any]:
    """Cut the last checkpoint short, as a write stopped midway (resume must use the one before);
    its inode joins ``planted``. Returns what the event records."""
    last = run_dir / ckpt.LAST_NAME
    damage = _damage_report(run_dir, planted)
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    planted.add(last.stat().st_ino)
    return {"damage_found": damage, "truncated_last_checkpoint": True}


def _faulted_segments(config: Path, run_dir: Path, iters: int, kills: int, seed: int,
                      say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Train the faulted run in segments, each ended by the next fault of the plan; returns
    one event per fault (it stops early when the run has reached its end)."""
    rng = np.random.default_rng(seed)
    plan, truncate_after = _fault_plan(kills)
    planted: set[int] = set()
    events = []
    for number, fault in enumerate(plan):
        start = _checkpoint_iteration(run_dir)
        if start + 1 >= iters:
            break
        at = int(rng.integers(start + 1, min(iters, start + 8)))  # within two checkpoint intervals
        event: dict[str, Any] = {"fault": fault, "resumed_from": start}
        if fault == "disk full":
            event.update(_disk_full(config, run_dir))
        elif fault == "SIGTERM":
            event.update(_signalled(config, run_dir, at, signal.SIGTERM, PREEMPTED_EXIT_STATUS))
        else:
            event.update(_signalled(config, run_dir, at, signal.SIGKILL, -signal.SIGKILL))
            if number == truncate_after and len(ckpt.checkpoint_versions(run_dir / ckpt.LAST_NAME)) > 1:
                event.update(_truncate_last(run_dir, planted))
        if not event.get("truncated_last_checkpoint"):
            event["damage_found"] = _damage_report(run_dir, planted)
        say(f"[faults] {fault:<9} {json.dumps({k: v for k, v in event.items() if k != 'fault'})}")
        events.append(event)
    return events


def _train_through(config: Path, run_dir: Path, what: str) -> None:
    status, err = Segment(config, run_dir).finish()
    if status != 0:
        raise RuntimeError(f"{what} failed:\n{err[-3000:]}")


def run_faults(work: Path, iters: int, kills: int, seed: int,
               say: Callable[[str], None] = print, probes_too: bool = True) -> dict[str, Any]:
    """The whole check in ``work``; returns the results (``passed`` among them)."""
    from tufl.demo.scenes import ensure_demo_data

    data = work / "data"
    ensure_demo_data(data, seed=0, size=(64, 32), n_source=8, n_target_train=8, n_target_val=2, workers=1)
    configs = {}
    for name in ("reference", "faulted"):
        configs[name] = work / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(run_config(data, work / name, iters)))
    say(f"[faults] reference: {iters} iterations straight through")
    _train_through(configs["reference"], work / "reference", "the reference run")
    run_dir = work / "faulted"
    events = _faulted_segments(configs["faulted"], run_dir, iters, kills, seed, say)
    _train_through(configs["faulted"], run_dir, "the final resumed segment")
    differ = compare_states(ckpt.load_checkpoint(work / "reference" / ckpt.LAST_NAME),
                            ckpt.load_checkpoint(run_dir / ckpt.LAST_NAME))
    damage = _damage_report(run_dir)
    for event in events:
        event["lost"] = "nothing" if not differ and not event["damage_found"]["unreadable_checkpoints"] else "state"
    probes = run_probes(work, run_config(data, work / "probes", iters), data, work / "reference", say) if probes_too else []
    # a kill during a write leaves its temporary file; the next start removes it (counted at the end)
    passed = (not differ and all(e["stopped_cleanly"] for e in events) and not any(damage.values())
              and not any(e["damage_found"]["unreadable_checkpoints"] for e in events)
              and all(p["survived"] for p in probes))
    survived = sum(e["stopped_cleanly"] for e in events) + sum(p["survived"] for p in probes)
    return {"iterations": iters, "events": events, "probes": probes, "faults_survived": survived,
            "faults": len(events) + len(probes), "final_differs_in": differ[:10], "bit_identical": not differ,
            **damage, "passed": passed}


def run_probes(work: Path, config: dict[str, Any], data: Path, reference: Path,
               say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """The probes of :mod:`tufl.bench.fault_probes` and :mod:`tufl.bench.state_probes`, in
    ``work / "probes"``, against the reference run in ``reference``; each printed as it ends."""
    root = work / "probes"
    root.mkdir(parents=True, exist_ok=True)
    last = reference / ckpt.LAST_NAME
    held = write_config_for(root / "held.yaml", config, root / "held")
    steps: list[Callable[[], dict[str, Any]]] = [
        lambda: fault_probes.full_filesystem(root, config, last),
        lambda: fault_probes.full_filesystem_predict(root, data / "cityscapes_like" / "leftImg8bit" / "val", last),
        lambda: fault_probes.decompression_bomb(root, config, Path(config["data"]["source"]["root"])),
        lambda: fault_probes.concurrent_runs(root, held, root / "held", last),
        lambda: state_probes.poisoned_learning_rates(root, config),
        lambda: state_probes.kill_in_rotation(root, config, last),
        lambda: state_probes.mixed_pseudo_labels(root, config, (last, ckpt.older_checkpoint(last, 1))),
    ]
    probes = []
    for step in steps:
        probe = step()
        say(f"[faults] {probe['fault']}: {'survived' if probe['survived'] else 'NOT SURVIVED'}; lost: "
            f"{probe['lost']}; {json.dumps({k: v for k, v in probe.items() if k not in ('fault', 'survived', 'lost')})}")
        probes.append(probe)
    return probes


def write_config_for(path: Path, config: dict[str, Any], run_dir: Path) -> Path:
    """``config`` with its output folder set to ``run_dir``, written to ``path``."""
    return fault_probes.write_config(path, config, experiment={"output_dir": str(run_dir)})


def fault_table(results: dict[str, Any]) -> str:
    """One line per fault of :func:`run_faults`: survived or not, and what was lost."""
    rows = [(e["fault"], e["stopped_cleanly"], e["lost"]) for e in results["events"]]
    rows += [(p["fault"], p["survived"], p["lost"]) for p in results["probes"]]
    width = max((len(name) for name, _, _ in rows), default=5)
    return "\n".join(f"[faults] {name:<{width}}  {'survived' if ok else 'NOT SURVIVED'}  lost: {lost}"
                     for name, ok, lost in rows)


def summary_line(results: dict[str, Any]) -> str:
    """The verdict of :func:`run_faults` in one line."""
    return (f"[faults] faults survived: {results['faults_survived']} of {results['faults']}; final state "
            f"{'bit-identical to' if results['bit_identical'] else 'DIFFERENT from'} the uninterrupted run; "
            f"unreadable checkpoints: {results['unreadable_checkpoints']}; temporary files left: "
            f"{results['temporary_files']}: {'PASSED' if results['passed'] else 'FAILED'}")
