"""The probes of ``tufl benchmark faults`` beyond kills and resumes: what users and disks do
to a run besides stopping it. Each probe works on copies in its own folder and returns
what happened (``survived``: every promise held; ``lost``: what a user lost, ``nothing``
when nothing but the iterations since the last checkpoint)::

* a full filesystem: a small tmpfs mounted as the run folder when this process may mount
  one (root), else the process's file-size limit (``how`` says which); then ``predict``
  into a full folder;
* a decompression bomb among the source images (a PNG header declaring 10 gigapixels);
* a second run, and a second ``--resume auto``, on a folder a live run holds;
* a NaN learning rate (refused at load) and an overflowing one (steps undone on the device);
* a kill between the renames of a checkpoint rotation;
* a pseudo-label folder half overwritten by another checkpoint's labels.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tufl.bench.fault_process import Segment, compare_states, limit_file_size
from tufl.runtime import checkpoint_files as ckpt

Probe = dict[str, Any]
SURVIVED_NOTHING_LOST = "nothing"

# Kills itself right after the second rename of checkpoint_last.pt to checkpoint_last.1.pt:
# the new checkpoint is complete under its pending name, the previous one shifted away.
KILL_IN_ROTATION = """
import os, signal, sys
from tufl.cli import main
real, shifts = os.replace, []
def replace(src, dst, *args, **kwargs):
    real(src, dst, *args, **kwargs)
    if os.fspath(dst).endswith("checkpoint_last.1.pt"):
        shifts.append(dst)
        if len(shifts) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
sys.exit(main(["train", "--config", sys.argv[1], "--resume", "auto"]))
"""


# A learning rate that turns NaN at iteration 3 while the run goes on (as a faulty schedule
# plug-in would): every step from then on must be undone on the device, no checkpoint may
# hold a NaN, and the run must end with an error.
NAN_LR_MIDWAY = """
import sys
from tufl.cli import main
from tufl.train import engine
real = engine.set_learning_rate
def poisoned(optimizer, iteration, total, cfg):
    lr = real(optimizer, iteration, total, cfg)
    if iteration >= 3:
        for group in optimizer.param_groups:
            group["lr"] = float("nan")
    return lr
engine.set_learning_rate = poisoned
sys.exit(main(["train", "--config", sys.argv[1]]))
"""


def tufl(*args: str, code: str | None = None, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tufl ARGS`` (or ``python -c CODE ARGS``) to its end, output captured;
    ``limit``: the file-size limit (bytes) of the process."""
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "tufl", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900,
                          preexec_fn=(lambda: limit_file_size(limit)) if limit else None)


def first_error(text: str) -> str:
    """The first ``error:`` line of a command's output ('' when none), shortened."""
    return next((line[:200] for line in text.splitlines() if line.startswith("error:")), "")


def write_config(path: Path, config: dict[str, Any], **sections: dict[str, Any]) -> Path:
    """``config`` with ``sections`` merged into its sections, written as YAML to ``path``."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in config.items()}
    for key, values in sections.items():
        merged[key] = {**merged.get(key, {}), **values}
    path.write_text(yaml.safe_dump(merged))
    return path


def same_as(reference: Path, run_dir: Path) -> bool:
    """Whether the run's last checkpoint equals the reference's bit for bit."""
    return not compare_states(ckpt.load_checkpoint(reference), ckpt.load_checkpoint(run_dir / ckpt.LAST_NAME))


def leftovers(folder: Path) -> list[str]:
    """Temporary files of interrupted writes under ``folder``."""
    return sorted(str(p) for p in folder.rglob("*.tmp"))


class SmallDisk:
    """A small filesystem at ``folder``: a tmpfs of ``size`` bytes when this process may mount
    one, else nothing (``mounted`` false: callers use the file-size limit instead)."""

    def __init__(self, folder: Path, size: int) -> None:
        self.folder, self.size, self.mounted = folder, size, False

    def __enter__(self) -> SmallDisk:
        self.folder.mkdir(parents=True, exist_ok=True)
        if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount"):
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.folder)],
                                  capture_output=True, text=True)
            self.mounted = done.returncode == 0
        return self

    def used(self) -> int:
        stats = os.statvfs(self.folder)
        return (stats.f_blocks - stats.f_bfree) * stats.f_frsize

    @property
    def how(self) -> str:
        return (f"a real tmpfs of {self.size // 1024} KiB mounted as the folder" if self.mounted
                else "the process's file-size limit (RLIMIT_FSIZE; no mount rights)")

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.folder)], capture_output=True)


def full_filesystem(work: Path, config: dict[str, Any], reference: Path) -> Probe:
    """Train into a folder with room for one checkpoint: the run must stop naming the checkpoint
    (not a secondary file), give the space back, keep its earlier checkpoint loadable, and
    resume elsewhere to the reference's final state."""
    size = reference.stat().st_size
    disk_size = (size * 3 // 2 + 4096 * 64) // 4096 * 4096
    run_dir = work / "full_fs" / "run"
    cfg = write_config(work / "full_fs.yaml", config, experiment={"output_dir": str(run_dir)})
    with SmallDisk(run_dir, disk_size) as disk:
        done = tufl("train", "--config", str(cfg), "--resume", "auto",
                    limit=None if disk.mounted else size // 2 * 3)
        message = first_error(done.stderr)
        files_size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
        space_back = not disk.mounted or disk.used() <= files_size + 4096 * 64
        kept = [p for p in ckpt.checkpoint_versions(run_dir / ckpt.LAST_NAME) if _loads(p)]
        left = leftovers(run_dir)
        moved = work / "full_fs" / "moved"
        shutil.copytree(run_dir, moved)
        how = disk.how
    write_config(cfg, config, experiment={"output_dir": str(moved)})
    resumed = tufl("train", "--config", str(cfg), "--resume", "auto")
    survived = (done.returncode == 1 and ckpt.LAST_NAME in message and "run_info" not in message
                and space_back and bool(kept) and not left and resumed.returncode == 0 and same_as(reference, moved))
    return {"fault": "full filesystem (train)", "how": how, "exit_status": done.returncode, "message": message,
            "space_given_back": space_back, "loadable_checkpoints": len(kept), "temporary_files": left,
            "resumed_elsewhere_bit_identical": resumed.returncode == 0 and same_as(reference, moved),
            "survived": survived, "lost": SURVIVED_NOTHING_LOST if survived else "see the record"}


def full_filesystem_predict(work: Path, images: Path, checkpoint: Path) -> Probe:
    """``tufl predict`` into a folder with room for a few maps: one error line naming a file,
    no half-written file, status 1."""
    out = work / "full_predict"
    with SmallDisk(out, 8 * 4096) as disk:
        done = tufl("predict", "--checkpoint", str(checkpoint), "--out", str(out), str(images),
                    limit=None if disk.mounted else 6000)
        message = first_error(done.stderr)
        left = leftovers(out)
        how = disk.how
        traceback = "Traceback" in done.stderr
    survived = done.returncode == 1 and str(out) in message and not left and not traceback
    return {"fault": "full filesystem (predict)", "how": how, "exit_status": done.returncode, "message": message,
            "temporary_files": left, "traceback": traceback, "survived": survived,
            "lost": SURVIVED_NOTHING_LOST if survived else "see the record"}


def _loads(path: Path) -> bool:
    try:
        ckpt.load_checkpoint(path)
        return True
    except Exception:
        return False


def bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> None:
    """A small PNG file whose header declares ``width`` x ``height`` RGB pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def decompression_bomb(work: Path, config: dict[str, Any], source_root: Path) -> Probe:
    """A source image replaced by a 10-gigapixel PNG header: ``check-data`` names it, training
    skips it as a named bad sample and ends normally (1 of 8 samples: ``data.max_bad_fraction``
    raised to 0.2; the default 0.01 stops the run naming the file)."""
    root = work / "bomb" / "source"
    shutil.copytree(source_root, root)
    bomb = sorted((root / "images").iterdir())[1]
    bomb_png(bomb)
    run_dir = work / "bomb" / "run"
    source = {**config["data"]["source"], "root": str(root)}
    cfg = write_config(work / "bomb.yaml", config, experiment={"output_dir": str(run_dir)},
                       data={"source": source, "max_bad_fraction": 0.2}, train={"iters": 4})
    checked = tufl("check-data", "--config", str(cfg))
    trained = tufl("train", "--config", str(cfg))
    bad = run_dir / "bad_samples.json"
    named = bad.is_file() and bomb.name in bad.read_text()
    survived = (bomb.name in checked.stdout + checked.stderr and trained.returncode == 0 and named
                and "Traceback" not in trained.stderr + checked.stderr)
    return {"fault": "decompression bomb (source image)", "file": str(bomb), "check_data_status": checked.returncode,
            "check_data_names_it": bomb.name in checked.stdout + checked.stderr, "train_status": trained.returncode,
            "in_bad_samples_json": named, "survived": survived,
            "lost": "one sample skipped (named)" if survived else "see the record"}


def concurrent_runs(work: Path, config_path: Path, run_dir: Path, reference: Path) -> Probe:
    """A live run (stopped with SIGSTOP after its first logged iteration, still holding its
    folder) gets a second fresh run and a ``--resume auto`` beside it: both refused naming
    the holder; the first run then ends bit-identical to the uninterrupted reference."""
    first = Segment(config_path, run_dir)
    deadline_ok = _wait_for(lambda: first.reached() >= 1 or first.proc.poll() is not None)
    first.proc.send_signal(signal.SIGSTOP)
    try:
        fresh = tufl("train", "--config", str(config_path))
        resume = tufl("train", "--config", str(config_path), "--resume", "auto")
    finally:
        first.proc.send_signal(signal.SIGCONT)
    status, _ = first.finish()
    refused = [first_error(done.stderr) for done in (fresh, resume)]
    holder = str(first.proc.pid)
    survived = (deadline_ok and all(d.returncode != 0 for d in (fresh, resume))
                and all(holder in m for m in refused) and status == 0 and same_as(reference, run_dir))
    return {"fault": "two runs on one folder", "second_run_status": fresh.returncode,
            "resume_beside_status": resume.returncode, "messages": refused, "first_run_status": status,
            "first_run_bit_identical": status == 0 and same_as(reference, run_dir), "survived": survived,
            "lost": SURVIVED_NOTHING_LOST if survived else "see the record"}


def _wait_for(condition: Callable[[], bool], timeout: float = 600) -> bool:
    import time

    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(0.01)
    return True
