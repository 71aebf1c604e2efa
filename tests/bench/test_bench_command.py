"""`tufl benchmark WHAT`: every benchmark's options, their defaults and help, and the exit statuses."""

from __future__ import annotations

import pytest

from tufl.cli import main
from tufl.cli.benchmark import WHAT
from tufl.cli.benchmark_options import PARSERS

DEFAULTS = {
    "loss": {"device": "cpu", "classes": 19, "height": 512, "width": 1024, "batch": 2, "repeats": 5, "warmup": 1,
             "dtype": "float32", "threads": None, "backends": None, "json": None, "profile": None},
    "train": {"archs": ["deeplabv2", "bisenet"], "modes": ["source_only", "stage1", "stage2"], "height": 512,
              "width": 512, "batch": 2, "amp": False, "warmup": None, "repeats": 3, "overrides": [], "json": None,
              "end_to_end": False, "config": "configs/gta5_cityscapes/deeplabv2_stage1.yaml", "iters": 10,
              "images": 16, "workers": None, "size_divisor": 1, "compare": False, "before_set": [], "after_set": [],
              "before_src": None, "out_dir": None, "seed": 0},
    "inference": {"height": 1024, "width": 2048, "batch": 1, "warmup": 5, "repeats": 20, "amp": False, "json": None,
                  "builder": None},
    "data": {"out_dir": None, "images": 8, "batches": 20, "batch_size": 2, "workers": [0, 2], "size_divisor": 1,
             "seed": 0, "variants": ["original", "prepared"]},
    "faults": {"iters": 24, "kills": 3, "seed": 0, "no_probes": False, "out": None, "json": None},
}


@pytest.mark.parametrize("what", WHAT)
def test_each_benchmark_has_its_options_and_defaults(what):
    args = vars(PARSERS[what](f"tufl benchmark {what}").parse_args([]))
    if what != "loss":  # their default device: cuda when available, else cpu
        args.pop("device", None)
    assert args == DEFAULTS[what]


@pytest.mark.parametrize("what", WHAT)
def test_each_benchmark_prints_its_help(what, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", what, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and out.startswith(f"usage: tufl benchmark {what} ")
    for option in DEFAULTS[what]:
        if option != "overrides":
            assert f"--{option.replace('_', '-')}" in out


def test_train_help_keeps_the_end_to_end_group(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "end-to-end mode (--end-to-end):" in out
    assert "untimed iterations (default: 1; --end-to-end: 2 per worker + 2, which drains the loaders' prefetched" in out
    assert "--set KEY=VALUE config setting, e.g. loss.tufl.backend=torch (repeatable)" in out


def test_a_failing_step_run_ends_with_status_1_and_its_error(capsys):
    code = main(["benchmark", "train", "--archs", "bisenet", "--modes", "stage1", "--height", "32", "--width", "32",
                 "--device", "cpu", "--set", "no_such.key=1"])
    assert code == 1 and "no_such" in capsys.readouterr().err


def test_bad_end_to_end_numbers_are_refused_before_anything_runs(capsys):
    assert main(["benchmark", "train", "--end-to-end", "--iters", "0"]) == 2
    assert "--images, --iters and --size-divisor must be >= 1" in capsys.readouterr().err
