"""Preemption (stop signals), --resume auto, failed checkpoint writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import runs
from tufl.cli import main
from tufl.runtime.typed_config import ConfigError
from tufl.runtime import checkpoint_files as ckpt
from tufl.train.engine import train
from tufl.runtime.stop_signals import PREEMPTED_EXIT_STATUS
from tufl.runtime.run_log import read_metrics

ITERS = 10


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tufl", *args]


def _wait_for_iteration(proc: subprocess.Popen, run_dir: Path, iteration: int) -> None:
    deadline = time.time() + 300
    while time.time() < deadline:
        if any(r["iter"] >= iteration for r in read_metrics(run_dir, "train")):
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the signal: {proc.stderr.read()[-3000:]}")
        time.sleep(0.02)
    pytest.fail("the run did not reach the iteration in time")


def _same_weights(a: dict, b: dict) -> None:
    assert a["iteration"] == b["iteration"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["losses"]:
        assert torch.equal(a["losses"][key], b["losses"][key]), key
    momentum = [(s["momentum_buffer"], t["momentum_buffer"])
                for s, t in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values())]
    assert momentum and all(torch.equal(x, y) for x, y in momentum)


def test_sigterm_checkpoints_the_current_iteration_and_resume_auto_ends_bit_identical(
        scene_info, source_only_run, tmp_path):
    # checkpoint_every is beyond the run: the only mid-run checkpoint is the one the signal makes
    extra = {"model": {"pretrained": str(source_only_run / "checkpoint_last.pt")},
             "train": {"deterministic": True, "checkpoint_every": 100}}
    straight = runs.write_yaml(runs.run_tree(scene_info, tmp_path / "straight", "stage1", ITERS, **extra),
                               tmp_path / "straight.yaml")
    stopped = runs.write_yaml(runs.run_tree(scene_info, tmp_path / "stopped", "stage1", ITERS, **extra),
                              tmp_path / "stopped.yaml")
    subprocess.run(_cli("train", "--config", str(straight)), check=True, capture_output=True)

    proc = subprocess.Popen(_cli("train", "--config", str(stopped)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_iteration(proc, tmp_path / "stopped", 2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == PREEMPTED_EXIT_STATUS, stderr[-3000:]
    state = ckpt.load_checkpoint(tmp_path / "stopped" / ckpt.LAST_NAME)
    stop_iteration = state["iteration"]
    assert 2 <= stop_iteration < ITERS
    assert f"stopped by SIGTERM at iteration {stop_iteration}" in stderr and "--resume auto" in stderr
    assert "Traceback" not in stderr
    # the checkpoint is the iteration the run had finished: its last logged one
    assert max(r["iter"] for r in read_metrics(tmp_path / "stopped", "train")) == stop_iteration

    done = subprocess.run(_cli("train", "--config", str(stopped), "--resume", "auto"),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    _same_weights(ckpt.load_checkpoint(tmp_path / "straight" / ckpt.LAST_NAME),
                  ckpt.load_checkpoint(tmp_path / "stopped" / ckpt.LAST_NAME))


SECOND_SIGNAL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from tufl.runtime.distributed import DistContext
    from tufl.runtime.stop_signals import StopSignals
    with StopSignals(["SIGTERM", "SIGUSR1"], DistContext()) as stop:
        os.kill(os.getpid(), signal.SIGUSR1)
        while stop.stop_requested() is None:
            time.sleep(0.001)
        print("first:", stop.stop_requested(), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        print("not reached", flush=True)
""")


def test_a_second_signal_exits_at_once():
    done = subprocess.run([sys.executable, "-c", SECOND_SIGNAL_SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.splitlines() == ["first: SIGUSR1"]
    assert done.returncode == 128 + signal.SIGTERM
    assert "second signal (SIGTERM): exiting now" in done.stderr


def test_resume_auto_starts_fresh_resumes_and_refuses_another_config(scene_info, tmp_path, capsys):
    tree = runs.run_tree(scene_info, tmp_path / "run", "source_only", 4, train={"checkpoint_every": 2})
    train(runs.config(tree), resume="auto")  # empty folder: a new run
    assert "no checkpoint" in capsys.readouterr().out
    assert ckpt.load_checkpoint(tmp_path / "run" / ckpt.LAST_NAME)["iteration"] == 4

    other = runs.run_tree(scene_info, tmp_path / "run", "source_only", 6,
                          train={"checkpoint_every": 2}, optim={"lr": 0.02})
    with pytest.raises(ConfigError) as refused:
        train(runs.config(other), resume="auto")
    message = str(refused.value)
    assert "optim.lr: checkpoint 0.01, this run 0.02" in message and "train.iters: checkpoint 4, this run 6" in message
    assert "--resume force" in message

    # operational keys may differ; the config switch resumes without the flag
    watched = runs.run_tree(scene_info, tmp_path / "run", "source_only", 4,
                            train={"checkpoint_every": 2, "log_every": 3, "auto_resume": True})
    train(runs.config(watched))
    assert "resum" not in capsys.readouterr().err

    train(runs.config(other), resume="force")  # continues to 6 with the new config, saying what differs
    assert "--resume force: continuing" in capsys.readouterr().out
    assert ckpt.load_checkpoint(tmp_path / "run" / ckpt.LAST_NAME)["iteration"] == 6


def test_a_checkpoint_that_cannot_be_written_stops_the_run_and_keeps_the_previous_ones(
        scene_info, tmp_path, monkeypatch, capsys):
    tree = runs.run_tree(scene_info, tmp_path / "run", "source_only", 6, train={"checkpoint_every": 2})
    config = runs.write_yaml(tree, tmp_path / "run.yaml")
    real_save, calls = torch.save, []

    def disk_full_after_first(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) > 1:  # the second checkpoint: half written, then the disk is full
            f.write(b"PK\x03\x04 partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", disk_full_after_first)
    status = main(["train", "--config", str(config)])
    err = capsys.readouterr().err
    last = tmp_path / "run" / ckpt.LAST_NAME
    assert status == 1
    assert f"cannot write {last}: the write failed; is the disk full?" in err
    assert "Training stopped at iteration 4" in err and "checkpoint_last.pt" in err
    assert ckpt.load_checkpoint(last)["iteration"] == 2  # the previous checkpoint, intact
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    assert calls[1].closed  # the failed file's handle is released
    assert "Traceback" not in err and len([line for line in err.splitlines() if line.startswith("error:")]) == 1


def test_sigterm_to_torchrun_stops_both_ranks_at_one_iteration_with_one_checkpoint(scene_info, tmp_path):
    iters = 40
    tree = runs.run_tree(scene_info, tmp_path / "ddp", "source_only", iters, train={"checkpoint_every": 1000})
    path = runs.write_yaml(tree, tmp_path / "cfg.yaml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "tufl", "train", "--config", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        _wait_for_iteration(proc, tmp_path / "ddp", 2)
        proc.send_signal(signal.SIGTERM)  # what SLURM and Kubernetes send; torchrun passes it to both ranks
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    files = sorted(p.name for p in (tmp_path / "ddp").glob("checkpoint*"))
    assert files == ["checkpoint_last.pt"], output[-3000:]
    state = ckpt.load_checkpoint(tmp_path / "ddp" / ckpt.LAST_NAME)
    stopped_at = state["iteration"]
    assert 2 <= stopped_at < iters and len(state["rng"]) == 2
    # each rank reports the same stop iteration
    reports = [line for line in output.splitlines() if "stopped by SIGTERM at iteration" in line]
    assert len(reports) == 2, output[-3000:]
    assert all(f"at iteration {stopped_at};" in line for line in reports)
    assert "/tufl/" not in output  # the only traceback is torchrun's own (its agent re-raises the signal)


POOL_SCRIPT = textwrap.dedent("""
    import multiprocessing, os, signal, sys, time
    from tufl.runtime.distributed import DistContext
    from tufl.runtime.stop_signals import StopSignals

    def block_forever():
        multiprocessing.Event().wait()

    with StopSignals(["SIGTERM", "SIGUSR1"], DistContext()) as stop:
        child = multiprocessing.get_context("fork").Process(target=block_forever)
        child.start()
        time.sleep(0.2)
        child.terminate()  # what Pool.terminate does to its workers: SIGTERM
        child.join(timeout=60)
        print("child", child.exitcode, "run", stop.stop_requested(), flush=True)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_a_process_forked_during_a_run_dies_of_sigterm_and_the_run_goes_on():
    """A multiprocessing pool built while the run's stop signals are caught (the class index of
    stage two) ends its workers with SIGTERM; inheriting the run's handler, they used to print
    'SIGTERM received' and block forever, and the run hung in Pool.terminate."""
    done = subprocess.run([sys.executable, "-c", POOL_SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["child", str(-signal.SIGTERM), "run", "None"], done.stdout + done.stderr
    assert "SIGTERM received" not in done.stderr
