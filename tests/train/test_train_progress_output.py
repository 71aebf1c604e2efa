"""A training run whose output is not a terminal (a log file, a pipe) writes plain progress lines:
no carriage returns, no escape codes."""

from __future__ import annotations

import re

import runs
from tufl.train.engine import train


def test_redirected_training_output_has_plain_progress_lines(scene_info, tmp_path, capsys):
    run = tmp_path / "run"
    tree = runs.run_tree(scene_info, run, "source_only", 4, train={"progress": True, "val_every": 2})
    train(runs.config(tree))  # pytest captures the output: it is not a terminal
    captured = capsys.readouterr()
    for text in (captured.err, captured.out):
        assert "\r" not in text and "\x1b" not in text
    lines = captured.err.splitlines()
    train_lines = [line for line in lines if line.startswith("source_only: ")]
    # the run ends within the 30 s between lines: one line, at its end, with the logged values
    assert len(train_lines) == 1, captured.err
    assert re.fullmatch(r"source_only: 4/4 \(100 %\), [0-9.e+-]+ it/s, loss=[0-9.e+-]+, loss_sup=[0-9.e+-]+, "
                        r"lr=[0-9.e+-]+",
                        train_lines[0]), train_lines[0]
    evaluate_lines = [line for line in lines if line.startswith("evaluate: ")]
    assert len(evaluate_lines) == 2  # validation at iterations 2 and 4, one image a batch
    assert all(re.fullmatch(r"evaluate: 4/4 \(100 %\), [0-9.e+-]+ batch/s", line) for line in evaluate_lines), lines
    assert "[tufl] iteration 4: val mIoU" in captured.out  # printed beside the bar
