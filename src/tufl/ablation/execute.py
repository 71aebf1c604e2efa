"""Train the runs of a plan, each as ``python -m tufl train ... --resume auto`` in its own process.

A run is finished when its own records say so (:func:`tufl.train.multi_seed.finished_run`:
``run_info.json`` or its last checkpoint at ``train.iters``); a finished run is not
trained again, an unfinished one continues from its checkpoint (``--resume auto``
starts afresh where there is none). A failed run (its exit status, its log's last
error line) is reported and the runs that start from it are not trained. Runs go one at
a time, or ``jobs`` at a time, never before the run they start from. The output of each
run goes to ``<out>/logs/<run>.log``. A SIGTERM or SIGINT stops the runs cleanly: each
running one gets SIGTERM (it checkpoints and exits with status 3), no new one starts.
On Linux a run also gets SIGTERM when ``tufl ablate`` dies without a word (SIGKILL, an OOM
kill), so no orphan keeps training beside the rerun.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tufl.ablation.plan import Plan, RunSpec
from tufl.runtime import checkpoint_files as ckpt
from tufl.runtime.errors import ConfigError
from tufl.runtime.stop_signals import PREEMPTED_EXIT_STATUS
from tufl.train.multi_seed import finished_run, read_yaml

LOG_FOLDER = "logs"
POLL_SECONDS = 0.2

# How a run ended in this invocation.
TRAINED, SKIPPED, FAILED, BLOCKED, STOPPED = "trained", "skipped", "failed", "blocked", "stopped"


@dataclass
class Outcome:
    """How one run ended: ``status`` one of trained, skipped (finished earlier), failed,
    blocked (the run it starts from failed), stopped (by a signal; resumable)."""

    status: str
    exit_code: int | None = None
    seconds: float | None = None
    reason: str = ""
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status in (TRAINED, SKIPPED)


@dataclass
class _Running:
    spec: RunSpec
    process: subprocess.Popen
    started: float
    log: Path


def stop_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to send the child SIGTERM when this process dies
    (``PR_SET_PDEATHSIG``); None elsewhere. A child whose parent is already gone exits."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(PREEMPTED_EXIT_STATUS)

    return preexec


def log_path(out: Path, spec: RunSpec) -> Path:
    return out / LOG_FOLDER / (spec.key.replace("/", "__") + ".log")


def train_command(spec: RunSpec) -> list[str]:
    """The command line of one run."""
    sets = [arg for item in spec.overrides for arg in ("--set", item)]
    return [sys.executable, "-m", "tufl", "train", "--config", str(spec.config), *sets, "--resume", "auto"]


def config_drift(spec: RunSpec, trained: dict | None = None) -> list[str]:
    """How ``spec``'s config now differs from the one its plan loaded (``KEY: planned A, now B``):
    its config files (or a base they name) edited while the grid runs. ``trained``: compare
    the config a finished run recorded (its ``config.yaml``) instead of the files."""
    from tufl.config import load_experiment
    from tufl.train.run_state import config_differences

    if trained is None:
        try:
            trained = load_experiment(spec.config, spec.overrides)
        except ConfigError as error:
            return [f"{spec.config} no longer loads: {'; '.join(error.problems)}"]
    return config_differences(spec.cfg, trained, names=("planned", "now"))


def last_error(log: Path) -> str:
    """The ``error:`` line a failed run printed last (else its last line)."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error:") or "Error" in line.split(":", 1)[0]]
    return (errors or lines or [""])[-1][:300]


@dataclass
class Runner:
    """Trains a plan's runs; ``say`` prints a progress line, ``describe`` adds a finished run's result."""

    plan: Plan
    out: Path
    jobs: int = 1
    say: Callable[[str], None] = print
    describe: Callable[[RunSpec], str] = lambda spec: ""
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    stop_signal: str | None = None
    _running: list[_Running] = field(default_factory=list)

    def run(self) -> dict[str, Outcome]:
        """Every run's outcome (in plan order)."""
        pending = list(self.plan.runs.values())
        total = len(pending)
        while pending or self._running:
            self._reap()
            for spec in list(pending):
                if len(self._running) >= self.jobs:
                    break
                ready = self._ready(spec)
                if ready is None:
                    continue
                pending.remove(spec)
                if ready:
                    self._start(spec, total - len(pending), total)
            if self._running:
                time.sleep(POLL_SECONDS)
        return {key: self.outcomes[key] for key in self.plan.runs}

    def _ready(self, spec: RunSpec) -> bool | None:
        """True: start it; False: settled without training (skipped, blocked, stopped); None: wait."""
        parent = self.outcomes.get(spec.parent) if spec.parent else None
        if spec.parent and parent is None:
            return None
        if self.stop_signal:
            self.outcomes[spec.key] = Outcome(STOPPED, reason=f"not started: stopped by {self.stop_signal}")
            return False
        if parent is not None and not parent.ok:
            self.outcomes[spec.key] = Outcome(BLOCKED, reason=f"the {self.plan.runs[spec.parent].stage} run it "
                                                               f"starts from ({spec.parent}) did not finish")
            self.say(f"[ablate] not run  {spec.label} ({spec.stage}): {self.outcomes[spec.key].reason}")
            return False
        return not self._skip(spec) and not self._drifted(spec)

    def _drifted(self, spec: RunSpec) -> bool:
        """A run whose config files changed since the plan is not started: it would train
        what the files say now, not the row the table names."""
        drift = config_drift(spec)
        if drift:
            self._fail(spec, "its config changed since tufl ablate planned the grid (" + "; ".join(drift) +
                       "); restore the files, or rerun tufl ablate to plan with them (runs finished with the "
                       "old config are then refused by name)")
        return bool(drift)

    def _fail(self, spec: RunSpec, reason: str, code: int | None = None, seconds: float | None = None,
              log: Path | None = None) -> None:
        self.outcomes[spec.key] = Outcome(FAILED, code, seconds, reason, log)
        self.say(f"[ablate] FAILED   {spec.label} ({spec.stage}): {reason}" + (f" (log: {log})" if log else ""))

    def _skip(self, spec: RunSpec) -> bool:
        try:  # the iteration its run finished at; a ConfigError for a finished run of another config
            done = finished_run(spec.cfg)
        except ConfigError as error:
            self._fail(spec, " ".join(str(error).split()))
            return True
        if done is None:
            return False
        self.outcomes[spec.key] = Outcome(SKIPPED, reason=f"finished earlier (iteration {done})")
        self.say(f"[ablate] skipped  {spec.label} ({spec.stage}): finished earlier (iteration {done}) in "
                 f"{spec.run_dir}{self.describe(spec)}")
        return True

    def _start(self, spec: RunSpec, index: int, total: int) -> None:
        log = log_path(self.out, spec)
        log.parent.mkdir(parents=True, exist_ok=True)
        resuming = bool(ckpt.checkpoint_versions(spec.run_dir / ckpt.LAST_NAME))
        verb = "resume " if resuming else "start  "
        self.say(f"[ablate] {verb} {spec.label} ({spec.stage}) [{index}/{total}] in {spec.run_dir} (log: {log})")
        with open(log, "a", encoding="utf-8") as stream:
            stream.write(f"\n$ {' '.join(train_command(spec))}\n")
            stream.flush()
            # A session of its own: a Ctrl-C at the terminal reaches tufl ablate, which forwards a SIGTERM.
            process = subprocess.Popen(train_command(spec), stdout=stream, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=stop_with_parent())
        self._running.append(_Running(spec, process, time.time(), log))

    def _reap(self) -> None:
        for running in [r for r in self._running if r.process.poll() is not None]:
            self._running.remove(running)
            self._finished(running, running.process.returncode)

    def _finished(self, running: _Running, code: int) -> None:
        spec, seconds = running.spec, time.time() - running.started
        if code == 0:
            recorded_path = spec.run_dir / "config.yaml"
            recorded = read_yaml(recorded_path)
            if not isinstance(recorded, dict):  # nothing to check it against: not counted as the row
                self._fail(spec, f"it exited 0 but its recorded config {recorded_path} is missing or unreadable, "
                                 "so what it trained cannot be checked against the plan", 0, seconds, running.log)
                return
            drift = config_drift(spec, recorded)
            if drift:  # its files changed between the check above and the run's start
                self._fail(spec, "it trained another config than planned (" + "; ".join(drift) + ")", 0, seconds,
                           running.log)
                return
            self.outcomes[spec.key] = Outcome(TRAINED, 0, seconds, log=running.log)
            self.say(f"[ablate] finished {spec.label} ({spec.stage}) in {seconds:.0f} s{self.describe(spec)}")
            return
        status = STOPPED if code == PREEMPTED_EXIT_STATUS else FAILED
        reason = f"exit status {code}: {last_error(running.log)}"
        self.outcomes[spec.key] = Outcome(status, code, seconds, reason, running.log)
        word = "stopped " if status == STOPPED else "FAILED  "
        self.say(f"[ablate] {word} {spec.label} ({spec.stage}) after {seconds:.0f} s, {reason} (log: {running.log})")

    def request_stop(self, name: str) -> None:
        """Stop: SIGTERM to the running runs (they checkpoint), no new run starts."""
        self.stop_signal = self.stop_signal or name
        for running in self._running:
            if running.process.poll() is None:
                try:
                    os.kill(running.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass


@contextmanager
def stop_on_signals(runner: Runner) -> Iterator[None]:
    """While active, SIGTERM and SIGINT ask ``runner`` to stop (see the module docstring)."""
    names = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}
    previous = {number: signal.getsignal(number) for number in names}

    def handle(number: int, frame: object) -> None:
        runner.request_stop(names[number])

    for number in names:
        signal.signal(number, handle)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
