"""YAML loading, inheritance, overrides and validation messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from tufl.runtime.typed_config import ConfigError, dump_config, load_config


@dataclass
class Inner:
    lr: float = 0.1
    steps: int = 10
    kind: Literal["a", "b"] = "a"
    size: tuple[int, int] = (4, 2)
    scales: list[float] = field(default_factory=lambda: [1.0])
    path: str | None = None

    def problems(self) -> list[str]:
        return ["lr: must be > 0"] if self.lr <= 0 else []


@dataclass
class Outer:
    name: str = "x"
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_inheritance_merges_sections_and_child_wins(tmp_path):
    base = _write(tmp_path / "base.yaml", {"name": "base", "inner": {"lr": 0.5, "steps": 3}})
    (tmp_path / "sub").mkdir()
    child = _write(tmp_path / "sub" / "child.yaml", {"_base_": "../base.yaml", "inner": {"steps": 7}})
    cfg = load_config(Outer, child)
    assert cfg == Outer(name="base", inner=Inner(lr=0.5, steps=7))
    assert base.exists()


def test_multiple_bases_later_wins_and_overrides_apply_last(tmp_path):
    _write(tmp_path / "a.yaml", {"inner": {"lr": 0.5, "kind": "b"}})
    _write(tmp_path / "b.yaml", {"inner": {"lr": 0.25}})
    child = _write(tmp_path / "c.yaml", {"_base_": ["a.yaml", "b.yaml"]})
    cfg = load_config(Outer, child, ["inner.steps=99", "inner.size=[8, 6]", "flag=true", "inner.path=/x"])
    assert cfg.inner == Inner(lr=0.25, steps=99, kind="b", size=(8, 6), path="/x")
    assert cfg.flag is True


def test_int_accepted_for_float_but_not_bool_for_int(tmp_path):
    cfg = load_config(Outer, _write(tmp_path / "c.yaml", {"inner": {"lr": 1}}))
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    with pytest.raises(ConfigError, match="inner.steps: expected an integer, got True"):
        load_config(Outer, _write(tmp_path / "d.yaml", {"inner": {"steps": True}}))


def test_unknown_key_names_key_and_file(tmp_path):
    path = _write(tmp_path / "c.yaml", {"inner": {"lrr": 0.1}})
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path)
    assert info.value.problems == [f"{path}: inner.lrr: unknown key (did you mean inner.lr?)"]


def test_wrong_type_error_names_the_file_that_set_it(tmp_path):
    _write(tmp_path / "base.yaml", {"inner": {"steps": "many"}})
    child = _write(tmp_path / "child.yaml", {"_base_": "base.yaml", "name": "ok"})
    with pytest.raises(ConfigError) as info:
        load_config(Outer, child)
    assert f"{tmp_path / 'base.yaml'}: inner.steps: expected an integer, got 'many'" in str(info.value)


def test_impossible_value_and_literal_and_tuple_length(tmp_path):
    path = _write(tmp_path / "c.yaml", {"inner": {"lr": -1}})
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path)
    assert info.value.problems == [f"{path}: inner.lr: must be > 0"]
    path = _write(tmp_path / "d.yaml", {"inner": {"kind": "z", "size": [1, 2, 3]}})
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path)
    problems = info.value.problems
    assert any("inner.kind: expected one of 'a', 'b', got 'z'" in p for p in problems)
    assert any("inner.size: expected a list of 2 items, got 3" in p for p in problems)


def test_override_errors_name_set(tmp_path):
    path = _write(tmp_path / "c.yaml", {})
    with pytest.raises(ConfigError, match=r"--set: inner.lr: expected a number, got 'fast'"):
        load_config(Outer, path, ["inner.lr=fast"])
    with pytest.raises(ConfigError, match=r"--set inner.nope: unknown key \(known keys here: kind, lr, path"):
        load_config(Outer, path, ["inner.nope=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(Outer, path, ["inner.lr"])


def test_missing_file_circular_base_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "missing.yaml")
    _write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    _write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="circular"):
        load_config(Outer, tmp_path / "a.yaml")
    (tmp_path / "bad.yaml").write_text("inner: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(Outer, _write(tmp_path / "c.yaml", {"_base_": "missing.yaml"}))


def test_dump_round_trip(tmp_path):
    cfg = Outer(name="n", flag=True, inner=Inner(lr=0.3, size=(5, 6), scales=[0.5, 1.0]))
    dump_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(Outer, tmp_path / "resolved.yaml") == cfg
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
