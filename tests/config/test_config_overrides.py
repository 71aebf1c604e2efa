"""Where a config problem is reported: unknown keys with suggestions, named by the file or the
``--set`` that wrote them (through ``_base_`` chains), and float spellings YAML 1.1 leaves as text."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import yaml

from tufl.runtime.typed_config import ALLOW_NON_FINITE, ConfigError, load_config


@dataclass
class Dataset:
    root: str = ""
    split: str = "train"


@dataclass
class Data:
    source: Dataset = field(default_factory=Dataset)
    target: Dataset = field(default_factory=Dataset)
    batch_size: int = 2


@dataclass
class Model:
    arch: str = "a"
    lr: float = 0.1
    scales: list[float] = field(default_factory=lambda: [1.0])
    note: str | None = None
    steps: int = 1
    limit: float = field(default=1.0, metadata={ALLOW_NON_FINITE: True})


@dataclass
class Top:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture()
def user_file(tmp_path):
    """The user's file, inheriting every section from a base file it does not change."""
    _write(tmp_path / "base.yaml", {"data": {"source": {"root": "r"}, "batch_size": 4}, "model": {"arch": "b"}})
    return _write(tmp_path / "my.yaml", {"_base_": "base.yaml", "model": {"lr": 0.5}})


def _problems(path, overrides=()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(Top, path, list(overrides))
    return info.value.problems


@pytest.mark.parametrize(("override", "expected"), [
    ("data.sourc.root=x", "--set data.sourc.root: unknown key (did you mean data.source?)"),
    ("modl.arch=x", "--set modl.arch: unknown key (did you mean model?)"),
    ("model.arhc=x", "--set model.arhc: unknown key (did you mean model.arch?)"),
    ("data.source.rot=x", "--set data.source.rot: unknown key (did you mean data.source.root?)"),
    ("data.zzz=1", "--set data.zzz: unknown key (known keys here: batch_size, source, target)"),
    ("data.sourc={root: x, split: val}", "--set data.sourc.root, data.sourc.split: unknown key "
                                         "(did you mean data.source?)"),
])
def test_unknown_key_set_by_override_is_named_as_typed(user_file, override, expected):
    assert _problems(user_file, [override]) == [expected]


def test_unknown_key_in_a_file_names_that_file_and_suggests(tmp_path, user_file):
    child = _write(tmp_path / "child.yaml", {"_base_": "my.yaml", "data": {"sourc": {"root": "y"}}})
    assert _problems(child) == [f"{child}: data.sourc: unknown key (did you mean data.source?)"]
    base = _write(tmp_path / "base2.yaml", {"modl": {"arch": "x"}})
    child = _write(tmp_path / "child2.yaml", {"_base_": "base2.yaml", "model": {"arch": "y"}})
    assert _problems(child) == [f"{base}: modl: unknown key (did you mean model?)"]
    # an override inside an unknown section of a file: the file wrote the unknown key
    child = _write(tmp_path / "child3.yaml", {"_base_": "my.yaml", "data": {"sourc": {"root": "y"}}})
    assert _problems(child, ["data.sourc.split=val"]) == [f"{child}: data.sourc: unknown key (did you mean "
                                                          "data.source?)"]


def test_each_key_keeps_the_file_that_set_it_through_several_bases(tmp_path):
    first = _write(tmp_path / "first.yaml", {"model": {"lr": "slow"}})
    _write(tmp_path / "second.yaml", {"model": {"steps": 3}})
    _write(tmp_path / "middle.yaml", {"_base_": ["first.yaml", "second.yaml"], "data": {"batch_size": 8}})
    top = _write(tmp_path / "top.yaml", {"_base_": "middle.yaml", "model": {"arch": "c"}})
    assert _problems(top) == [f"{first}: model.lr: expected a number, got 'slow'"]
    third = _write(tmp_path / "third.yaml", {"model": {"note": 5}})
    top = _write(tmp_path / "top2.yaml", {"_base_": ["first.yaml", "third.yaml"]})
    assert set(_problems(top)) == {f"{first}: model.lr: expected a number, got 'slow'",
                                   f"{third}: model.note: expected a string, got 5"}


def test_float_fields_take_the_usual_float_spellings(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("model:\n  lr: 1e-4\n  scales: [.5, 2E3, 1e10, -3.e2]\n")
    cfg = load_config(Top, path)
    assert cfg.model.lr == 0.0001 and cfg.model.scales == [0.5, 2000.0, 10000000000.0, -300.0]
    assert all(isinstance(v, float) for v in cfg.model.scales)
    cfg = load_config(Top, path, ["model.lr=1e10", "model.scales=[1E-4, +5e0]"])
    assert cfg.model.lr == 10000000000.0 and cfg.model.scales == [0.0001, 5.0]
    # inf and nan are read as numbers, and then refused unless the field takes them
    for text, number in (("inf", "inf"), ("-Infinity", "-inf"), ("nan", "nan"), (".nan", "nan")):
        assert _problems(path, [f"model.lr={text}"]) == [f"--set: model.lr: must be a finite number, got {number}"]
    assert load_config(Top, path, ["model.limit=inf"]).model.limit == math.inf
    assert load_config(Top, path, ["model.limit=-Infinity"]).model.limit == -math.inf
    assert math.isnan(load_config(Top, path, ["model.limit=nan"]).model.limit)
    # text stays text where the field is a string, integers stay strict
    assert load_config(Top, path, ["model.note=1e5"]).model.note == "1e5"
    assert _problems(path, ["model.steps=1e3"]) == ["--set: model.steps: expected an integer, got '1e3'"]
    for bad in ("1e", "e5", "1.2.3", "fast", "1e10e", "in f"):
        assert _problems(path, [f"model.lr={bad}"]) == [f"--set: model.lr: expected a number, got '{bad}'"]
