"""Probes of ``tufl benchmark faults`` on the state a run keeps: poisoned learning rates, a kill
inside a checkpoint rotation, a pseudo-label folder mixed from two checkpoints (see
:mod:`tufl.bench.fault_probes` for the record each returns)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from tufl.bench.fault_probes import (KILL_IN_ROTATION, NAN_LR_MIDWAY, SURVIVED_NOTHING_LOST, Probe, first_error, same_as, tufl,
                                     write_config)
from tufl.runtime import checkpoint_files as ckpt


def _finite(path: Path) -> bool:
    state = ckpt.load_checkpoint(path)["model"]
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def poisoned_learning_rates(work: Path, config: dict[str, Any]) -> Probe:
    """``optim.lr=.nan`` and ``1e30`` are refused at load naming the key, before the run folder
    exists; a learning rate that turns NaN during the run (iteration 3 on) has every step
    undone on the device, no checkpoint holds a non-finite weight, and the run ends with an
    error."""
    refused_dir, midway_dir = work / "nan_lr", work / "nan_lr_midway"
    cfg = write_config(work / "lr.yaml", config, experiment={"output_dir": str(refused_dir)},
                       train={"iters": 12, "checkpoint_every": 2, "max_nonfinite": 4})
    refused = [tufl("train", "--config", str(cfg), "--set", f"optim.lr={v}") for v in (".nan", "1e30")]
    messages = [_config_error(r.stderr) for r in refused]
    write_config(cfg, config, experiment={"output_dir": str(midway_dir)},
                 train={"iters": 12, "checkpoint_every": 2, "max_nonfinite": 4})
    midway = tufl(str(cfg), code=NAN_LR_MIDWAY)
    kept = ckpt.checkpoint_versions(midway_dir / ckpt.LAST_NAME)
    finite = bool(kept) and all(_finite(p) for p in kept)
    survived = (all(r.returncode == 2 for r in refused) and all("optim.lr" in m for m in messages)
                and not refused_dir.exists() and finite and midway.returncode == 1)
    return {"fault": "NaN learning rate", "refused_status": [r.returncode for r in refused],
            "refused_messages": messages, "run_folder_created": refused_dir.exists(),
            "midway_status": midway.returncode, "midway_message": first_error(midway.stderr),
            "midway_checkpoints": len(kept), "every_checkpoint_finite": finite, "survived": survived,
            "lost": "the iterations since the last finite checkpoint" if survived else "see the record"}


def _config_error(stderr: str) -> str:
    """The first refused key of an ``invalid configuration`` error."""
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), len(lines))
    return " ".join(line.strip() for line in lines[start:start + 2])[:200]


def kill_in_rotation(work: Path, config: dict[str, Any], reference: Path) -> Probe:
    """SIGKILL between the renames of a checkpoint save (after the last checkpoint moved to
    ``.1``, before the new one took its name): resume must take the complete new one, say so,
    and end bit-identical to the uninterrupted run."""
    run_dir = work / "rotation"
    cfg = write_config(work / "rotation.yaml", config, experiment={"output_dir": str(run_dir)})
    killed = tufl(str(cfg), code=KILL_IN_ROTATION)
    pending = ckpt.pending_checkpoint(run_dir / ckpt.LAST_NAME)
    waiting = ckpt.load_checkpoint(pending)["iteration"] if pending.is_file() else None
    resumed = tufl("train", "--config", str(cfg), "--resume", "auto")
    said = next((line for line in resumed.stdout.splitlines() if "resuming from" in line), "")
    identical = resumed.returncode == 0 and same_as(reference, run_dir)
    survived = killed.returncode < 0 and waiting is not None and pending.name in said and identical
    return {"fault": "kill between rotation renames", "killed_status": killed.returncode,
            "pending_iteration": waiting, "resume_said": said[:200], "final_bit_identical": identical,
            "survived": survived, "lost": SURVIVED_NOTHING_LOST if survived else "see the record"}


def mixed_pseudo_labels(work: Path, config: dict[str, Any], checkpoints: tuple[Path, Path]) -> Probe:
    """A pseudo-label folder of checkpoint A with every other file replaced by checkpoint B's:
    stage two refuses it naming a file and writes no checkpoint; ``tufl pseudo-label`` from A
    again repairs it and stage two then trains."""
    first, second = work / "pseudo_a", work / "pseudo_b"
    cfg = write_config(work / "pseudo.yaml", config)
    made = [tufl("pseudo-label", "--config", str(cfg), "--checkpoint", str(c), "--out", str(f))
            for c, f in zip(checkpoints, (first, second))]
    if any(m.returncode for m in made):
        return {"fault": "half-overwritten pseudo-label folder", "survived": False,
                "lost": "could not write the pseudo-labels: " + first_error(made[0].stderr + made[1].stderr)}
    files = sorted(p for p in second.rglob("*.png"))
    for path in files[::2]:
        shutil.copyfile(path, first / path.relative_to(second))
    stage2 = _stage_two_config(work, config, checkpoints[0], first)
    refused = tufl("train", "--config", str(stage2))
    refusal = first_error(refused.stderr)
    wrote = (work / "stage2" / ckpt.LAST_NAME).exists()
    rerun = tufl("pseudo-label", "--config", str(cfg), "--checkpoint", str(checkpoints[0]), "--out", str(first))
    trained = tufl("train", "--config", str(stage2))
    survived = (refused.returncode != 0 and str(first) in refusal and not wrote and rerun.returncode == 0
                and trained.returncode == 0)
    return {"fault": "half-overwritten pseudo-label folder", "files_replaced": len(files[::2]),
            "stage_two_status": refused.returncode, "refusal": refusal, "checkpoint_written": wrote,
            "after_rerun_stage_two_status": trained.returncode, "survived": survived,
            "lost": SURVIVED_NOTHING_LOST if survived else "see the record"}


def _stage_two_config(work: Path, config: dict[str, Any], start: Path, labels: Path) -> Path:
    return write_config(work / "stage2.yaml", config,
                        experiment={"output_dir": str(work / "stage2"), "mode": "stage2"},
                        model={"pretrained": str(start)}, pseudo_labels={"source": "offline", "dir": str(labels)},
                        train={"iters": 2})
