"""Non-finite and absurd values are refused at load, one line each naming the key and the file or
``--set`` it came from; the edge values of each range still load."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pytest

from tufl.config import load_experiment
from tufl.runtime.errors import ConfigError

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "gta5_cityscapes" / "bisenet_stage1.yaml"
WORKERS = 4 * (os.cpu_count() or 1)

# (key, YAML value, the key the message names, what it says)
REFUSED = [
    ("optim.lr", ".nan", "optim.lr", "must be a finite number, got nan"),
    ("optim.lr", ".inf", "optim.lr", "must be a finite number, got inf"),
    ("optim.lr", "1e10", "optim.lr", "must be a finite number in (0, 100], got 10000000000.0"),
    ("optim.lr", "0", "optim.lr", "must be a finite number in (0, 100], got 0.0"),
    ("optim.weight_decay", "-.inf", "optim.weight_decay", "must be a finite number, got -inf"),
    ("optim.warmup_iters", "100000000000000000000", "optim.warmup_iters", "must be in 0..1000000000 (0 = off)"),
    ("loss.lambda_u", ".nan", "loss.lambda_u", "must be a finite number, got nan"),
    ("loss.tufl.gamma", "nan", "loss.tufl.gamma", "must be a finite number, got nan"),
    ("mix.lambda_mix", ".nan", "mix.lambda_mix", "must be a finite number, got nan"),
    ("mix.longtail_k", "[2, 1000000]", "mix.longtail_k", "values must be in 1..64"),
    ("mic.weight", "inf", "mic.weight", "must be a finite number, got inf"),
    ("pseudo_labels.ema_momentum", ".nan", "pseudo_labels.ema_momentum", "must be a finite number, got nan"),
    ("data.source_aug.scale_range", "[.nan, 1.0]", "data.source_aug.scale_range[0]",
     "must be a finite number, got nan"),
    ("data.target_views.scale_range", "[1.0, .inf]", "data.target_views.scale_range[1]",
     "must be a finite number, got inf"),
    ("data.target_views.photometric.brightness", ".nan", "data.target_views.photometric.brightness",
     "must be a finite number, got nan"),
    ("data.max_bad_fraction", ".nan", "data.max_bad_fraction", "must be a finite number, got nan"),
    ("train.grad_clip", ".nan", "train.grad_clip", "must be a finite number, got nan"),
    ("train.grad_clip", "0", "train.grad_clip", "must be a finite number > 0 or null, got 0.0"),
    ("train.iters", "100000000000000000000000", "train.iters", "must be in 1..1000000000, got 10"),
    ("train.log_every", "0", "train.log_every", "must be in 1..1000000000, got 0"),
    ("train.keep_checkpoints", "100000000000000000000", "train.keep_checkpoints", "must be in 1..1000"),
    ("data.batch_size", "100000000000000000000", "data.batch_size", "must be in 1..4096, got 10"),
    ("eval.batch_size", "5000", "eval.batch_size", "must be in 1..4096, got 5000"),
    ("data.source_aug.crop_size", "[1000000000, 1000000000]", "data.source_aug.crop_size",
     "must be (width, height) with sides in 1..16384 pixels"),
    ("data.target_views.crop_size", "[512, 0]", "data.target_views.crop_size",
     "must be (width, height) with sides in 1..16384 pixels"),
    ("data.source.resize", "[40000, 720]", "data.source.resize",
     "must be (width, height) with sides in 1..32768 pixels"),
    ("eval.scales", "[1.0, 1000.0]", "eval.scales", "must be a non-empty list of numbers in (0, 16]"),
    ("experiment.seed", "-1", "experiment.seed", "must be in 0..4294967295, got -1"),
    ("experiment.seed", str(2**70), "experiment.seed", f"must be in 0..4294967295, got {2**70}"),
    ("experiment.seed", str(2**32), "experiment.seed", f"must be in 0..4294967295, got {2**32}"),
    ("data.num_workers", "100000", "data.num_workers", f"must be in 0..{WORKERS} (4 per CPU"),
    ("data.num_workers", "-1", "data.num_workers", f"must be in 0..{WORKERS} (4 per CPU"),
    ("eval.num_workers", "100000", "eval.num_workers", f"must be in 0..{WORKERS} (4 per CPU"),
    ("train.stop_signals", "[SIGKILL]", "train.stop_signals", "SIGKILL cannot be caught"),
    ("train.stop_signals", "[SIGTERM, STOP]", "train.stop_signals", "STOP cannot be caught"),
    ("train.stop_signals", "[SIGCHLD]", "train.stop_signals", "SIGCHLD arrives whenever a data-loading worker ends"),
    ("train.stop_signals", "[SIGNOPE]", "train.stop_signals", "unknown signal 'SIGNOPE'"),
    ("experiment.device", "bogus", "experiment.device", "must be auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps"),
    ("experiment.device", "'cuda:x'", "experiment.device", "must be auto, cpu, cuda, cuda:N"),
    ("experiment.device", "'cuda:'", "experiment.device", "must be auto, cpu, cuda, cuda:N"),
]


def _nested_yaml(key: str, value: str) -> str:
    """``a.b.c`` and a YAML value as nested YAML mappings."""
    parts = key.split(".")
    lines = [f"{'  ' * depth}{part}:" for depth, part in enumerate(parts[:-1])]
    return "\n".join([*lines, f"{'  ' * (len(parts) - 1)}{parts[-1]}: {value}"]) + "\n"


def _problems(path: Path, overrides: list[str] = ()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_experiment(path, overrides)
    return info.value.problems


def _one_line(problems: list[str], origin: str, key: str, says: str) -> None:
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{origin}: {key}: "), problems[0]
    assert says in problems[0], problems[0]


@pytest.mark.parametrize(("key", "value", "named", "says"), REFUSED, ids=[f"{k}={v}" for k, v, *_ in REFUSED])
def test_a_refused_value_names_its_key_and_origin(tmp_path, key, value, named, says):
    _one_line(_problems(CONFIG, [f"{key}={value}"]), "--set", named, says)
    user = tmp_path / "user.yaml"
    user.write_text(f"_base_: {CONFIG}\n" + _nested_yaml(key, value))
    _one_line(_problems(user), str(user), named, says)


@pytest.mark.skipif(not Path("/dev/null").is_char_device(), reason="needs /dev/null")
def test_output_dir_must_be_or_become_a_folder(tmp_path, monkeypatch):
    _one_line(_problems(CONFIG, ["experiment.output_dir=/dev/null"]), "--set", "experiment.output_dir",
              "/dev/null exists and is a character device; give a folder")
    afile = tmp_path / "afile"
    afile.write_text("x")
    _one_line(_problems(CONFIG, [f"experiment.output_dir={afile}"]), "--set", "experiment.output_dir",
              f"{afile} exists and is not a folder")
    _one_line(_problems(CONFIG, [f"experiment.output_dir={afile}/run"]), "--set", "experiment.output_dir",
              f"{afile} (a parent of {afile}/run) exists and is not a folder")
    # without an output_dir the run folder is runs/<name>, relative to the working directory
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("not a folder")
    user = tmp_path / "user.yaml"
    user.write_text(f"_base_: {CONFIG}\nexperiment:\n  name: mine\n  output_dir: null\n")
    _one_line(_problems(user), str(user), "experiment.name", "runs (a parent of runs/mine) exists and is not a folder")
    for folder in (tmp_path, tmp_path / "new" / "run"):  # an existing folder, one to be made
        assert load_experiment(CONFIG, [f"experiment.output_dir={folder}"]).experiment.output_dir == str(folder)


def test_several_refused_values_give_one_line_each():
    problems = _problems(CONFIG, ["optim.lr=.nan", "optim.warmup_iters=-1", "train.iters=0",
                                  "data.source_aug.scale_range=[.nan, .inf]", "experiment.seed=-1"])
    assert sorted(problems) == sorted([
        "--set: optim.lr: must be a finite number, got nan",
        "--set: optim.warmup_iters: must be in 0..1000000000 (0 = off), got -1",
        "--set: train.iters: must be in 1..1000000000, got 0",
        "--set: data.source_aug.scale_range[0]: must be a finite number, got nan",
        "--set: data.source_aug.scale_range[1]: must be a finite number, got inf",
        "--set: experiment.seed: must be in 0..4294967295, got -1",
    ])


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("experiment.seed", "0", 0),
    ("experiment.seed", str(2**32 - 1), 2**32 - 1),
    ("optim.lr", "1e-10", 1e-10),
    ("optim.lr", "5e-5", 5e-5),
    ("optim.lr", "1E2", 100.0),  # the upper bound, scientific notation
    ("optim.head_lr_mult", "1000", 1000.0),
    ("optim.warmup_iters", "0", 0),
    ("train.iters", "1000000000", 10**9),
    ("train.val_every", "0", 0),
    ("train.keep_checkpoints", "1000", 1000),
    ("train.grad_clip", "1e-3", 1e-3),
    ("train.stop_signals", "[SIGINT, TERM, SIGUSR2]", ("SIGINT", "TERM", "SIGUSR2")),
    ("train.stop_signals", "[]", ()),
    ("data.batch_size", "4096", 4096),
    ("data.num_workers", "0", 0),
    ("data.num_workers", str(WORKERS), WORKERS),
    ("data.source_aug.crop_size", "[16384, 1]", (16384, 1)),
    ("data.source.resize", "[32768, 32768]", (32768, 32768)),
    ("eval.scales", "[0.5, 16]", (0.5, 16.0)),
    ("mix.lambda_mix", "0", 0.0),
    ("loss.lambda_u", "1e3", 1000.0),
    ("experiment.device", "auto", "auto"),
    ("experiment.device", "cpu", "cpu"),
    ("experiment.device", "cuda", "cuda"),  # whether it exists is checked when the run starts
    ("experiment.device", "'cuda:7'", "cuda:7"),
    ("experiment.device", "mps", "mps"),
])
def test_edge_values_still_load(tmp_path, key, value, expected):
    section, _, name = key.rpartition(".")
    for cfg in (load_experiment(CONFIG, [f"{key}={value}"]),
                _load_file(tmp_path, key, value)):
        loaded = cfg
        for part in section.split("."):
            loaded = getattr(loaded, part)
        assert getattr(loaded, name) == expected
        assert type(getattr(loaded, name)) is type(expected)


def _load_file(tmp_path: Path, key: str, value: str):
    user = tmp_path / "user.yaml"
    user.write_text(f"_base_: {CONFIG}\n" + _nested_yaml(key, value))
    return load_experiment(user)


def test_scientific_notation_is_a_float_then_the_range_decides():
    # PyYAML reads 1e10 and 5e-5 as text; float fields take them as numbers (documented in
    # docs/config.md: optim.lr is a number in (0, 100]), so 1e10 reaches the range rule.
    assert load_experiment(CONFIG, ["optim.lr=5e-5"]).optim.lr == 5e-5
    assert _problems(CONFIG, ["optim.lr=1e10"]) == [
        "--set: optim.lr: must be a finite number in (0, 100], got 10000000000.0"]
    assert _problems(CONFIG, ["optim.lr=fast"]) == ["--set: optim.lr: expected a number, got 'fast'"]


@pytest.mark.parametrize("name", ["SIGKILL", "SIGSTOP"])
def test_uncatchable_signals_really_are(name):
    # the rule matches the platform: installing a handler for them fails
    with pytest.raises((OSError, ValueError)):
        signal.signal(getattr(signal, name), lambda *_: None)


def test_numbers_in_every_section_are_checked_when_built_in_code():
    # problems() refuses NaN and infinity itself, for sections made without the loader
    from tufl.data.config import DataConfig
    from tufl.data.photometric import PhotometricConfig
    from tufl.data.rare_class import RareClassSamplingConfig
    from tufl.data.transforms import SourceAugConfig
    from tufl.data.views import AffineConfig, TargetViewConfig
    from tufl.evaluation.options import EvalConfig
    from tufl.losses.registry import LossConfig
    from tufl.mixing.config import MixConfig
    from tufl.models.config import ModelConfig
    from tufl.objective.mic import MicConfig
    from tufl.objective.pseudo_labels import PseudoLabelConfig
    from tufl.train.config import TrainConfig
    from tufl.train.optim import OptimConfig

    nan, inf = math.nan, math.inf
    cases = [
        (OptimConfig(lr=nan), "lr"), (OptimConfig(lr=inf), "lr"), (OptimConfig(head_lr_mult=nan), "head_lr_mult"),
        (OptimConfig(weight_decay=nan), "weight_decay"), (OptimConfig(poly_power=inf), "poly_power"),
        (OptimConfig(momentum=nan), "momentum"), (OptimConfig(betas=(nan, 0.9)), "betas"),
        (TrainConfig(grad_clip=nan), "grad_clip"), (TrainConfig(grad_clip=inf), "grad_clip"),
        (LossConfig(lambda_u=nan), "lambda_u"), (LossConfig(lambda_u=inf), "lambda_u"),
        (MixConfig(lambda_mix=nan), "lambda_mix"), (MixConfig(boundary_weight=inf), "boundary_weight"),
        (MicConfig(weight=inf), "weight"), (PseudoLabelConfig(ema_momentum=nan), "ema_momentum"),
        (SourceAugConfig(scale_range=(nan, 1.0)), "scale_range"),
        (TargetViewConfig(scale_range=(1.0, inf)), "scale_range"), (AffineConfig(rotation=(nan, 0.0)), "rotation"),
        (PhotometricConfig(noise_std=(nan,)), "noise_std"), (PhotometricConfig(brightness=(nan, 1.0)), "brightness"),
        (RareClassSamplingConfig(temperature=nan), "temperature"),
        (EvalConfig(scales=(nan,)), "scales"), (ModelConfig(drop_path_rate=nan), "drop_path_rate"),
        (DataConfig(max_bad_fraction=nan), "max_bad_fraction"),
    ]
    for cfg, field in cases:
        assert [p.split(":")[0] for p in cfg.problems()] == [field], (cfg, cfg.problems())
