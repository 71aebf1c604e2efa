"""YAML configs validated against typed dataclasses.

* ``_base_: path`` (or a list of paths, relative to the file) inherits from other
  files; mappings merge recursively, everything else is replaced.
* ``--set a.b=value`` overrides are parsed as YAML scalars/lists and applied last.
* Unknown keys, wrong types and impossible values are rejected with a
  :class:`ConfigError` naming the key and the file (or ``--set``) it came from.
  Impossible values are reported by a dataclass's optional ``problems()`` method;
  a key that was removed or renamed gets the message in the dataclass's optional
  ``REMOVED_KEYS`` mapping.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from tufl.runtime.atomic import atomic_write_text
from tufl.runtime.errors import ConfigError

T = TypeVar("T")
BASE_KEY = "_base_"
OVERRIDE_ORIGIN = "--set"


# ----------------------------------------------------------------------------- files


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError([f"{path}: config file not found"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping, got {type(data).__name__}"])
    return data


def _merge(base: dict, update: dict, origins: dict[str, str], origin: str, prefix: str = "") -> dict:
    out = dict(base)
    for key, value in update.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origins, origin, path + ".")
        else:
            out[key] = value
            _set_origins(value, path, origins, origin)
    return out


def _set_origins(value: Any, path: str, origins: dict[str, str], origin: str) -> None:
    for key in [k for k in origins if k == path or k.startswith(path + ".")]:
        del origins[key]
    origins[path] = origin
    if isinstance(value, dict):
        for k, v in value.items():
            _set_origins(v, f"{path}.{k}", origins, origin)


def load_tree(path: str | Path, origins: dict[str, str], _chain: tuple[Path, ...] = ()) -> dict:
    """Read a YAML file with its ``_base_`` files merged in; record key origins."""
    path = Path(path).resolve()
    if path in _chain:
        raise ConfigError([f"{path}: circular {BASE_KEY} chain: " + " -> ".join(map(str, _chain + (path,)))])
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError([f"{path}: {BASE_KEY} must be a path or a list of paths"])
    merged: dict = {}
    for base in bases:
        merged = _merge(merged, load_tree(path.parent / base, origins, _chain + (path,)), {}, "")
    merged = _merge(merged, data, origins, str(path))
    return merged


def apply_overrides(tree: dict, overrides: Iterable[str], origins: dict[str, str]) -> dict:
    """Apply ``key.path=value`` strings (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError([f"{OVERRIDE_ORIGIN} {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-4"])
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError([f"{OVERRIDE_ORIGIN} {item!r}: value is not valid YAML: {exc}"]) from exc
        parts = key.split(".")
        node = tree
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError([f"{OVERRIDE_ORIGIN} {item!r}: {part!r} is not a section"])
            node = child
        update = {parts[-1]: value}
        merged = _merge(node, update, origins, OVERRIDE_ORIGIN, ".".join(parts[:-1]) + "." if len(parts) > 1 else "")
        node.clear()
        node.update(merged)
    return tree


# ------------------------------------------------------------------------ validation


def _origin(origins: dict[str, str], key: str, default: str) -> str:
    probe = key
    while probe:
        if probe in origins:
            return origins[probe]
        probe = probe.rpartition(".")[0]
    return default


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (list, tuple):
        return "a list"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


class _Validator:
    def __init__(self, origins: dict[str, str], default_origin: str) -> None:
        self.origins = origins
        self.default_origin = default_origin
        self.problems: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"{_origin(self.origins, key, self.default_origin)}: {key}: {message}")

    def convert(self, tp: Any, value: Any, key: str) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if dataclasses.is_dataclass(tp):
            return self.build(tp, value, key)
        if origin in (Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            candidates = [a for a in args if a is not type(None)]
            for cand in candidates:
                sub = _Validator(self.origins, self.default_origin)
                result = sub.convert(cand, value, key)
                if not sub.problems:
                    return result
            if len(candidates) == 1:
                return self.convert(candidates[0], value, key)
            self.fail(key, f"expected {_type_name(tp)}, got {value!r}")
            return None
        if origin is Literal:
            if value not in args:
                self.fail(key, f"expected {_type_name(tp)}, got {value!r}")
            return value
        if origin in (list, tuple):
            if not isinstance(value, (list, tuple)):
                self.fail(key, f"expected a list, got {value!r}")
                return value
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    self.fail(key, f"expected a list of {len(args)} items, got {len(value)}")
                    return tuple(value)
                return tuple(self.convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
            item_tp = args[0] if args else Any
            items = [self.convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
        if tp is Any:
            return value
        if tp is bool:
            if not isinstance(value, bool):
                self.fail(key, f"expected true/false, got {value!r}")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(key, f"expected an integer, got {value!r}")
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(key, f"expected a number, got {value!r}")
                return value
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                self.fail(key, f"expected a string, got {value!r}")
            return value
        raise TypeError(f"unsupported config field type {tp!r} at {key}")

    def build(self, cls: type[T], data: Any, prefix: str) -> T:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.fail(prefix or "<top>", f"expected a mapping, got {data!r}")
            return cls()
        hints = typing.get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs = {}
        known_before = len(self.problems)
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in fields:
                removed = getattr(cls, "REMOVED_KEYS", {})
                self.fail(path, removed.get(key) or f"unknown key (known keys here: {', '.join(sorted(fields))})")
                continue
            kwargs[key] = self.convert(hints[key], value, path)
        obj = cls(**kwargs)
        problems = getattr(obj, "problems", None)
        # Value checks only make sense once every field has the right type.
        if callable(problems) and len(self.problems) == known_before:
            for message in problems():
                field, _, text = message.partition(":")
                path = f"{prefix}.{field.strip()}" if prefix else field.strip()
                self.fail(path, text.strip() or message)
        return obj


def from_dict(cls: type[T], data: dict, origins: dict[str, str] | None = None,
              default_origin: str = "<config>") -> T:
    """Validate ``data`` against dataclass ``cls``; raise :class:`ConfigError`."""
    validator = _Validator(origins or {}, default_origin)
    obj = validator.build(cls, data, "")
    if validator.problems:
        raise ConfigError(validator.problems)
    return obj


def load_config(cls: type[T], path: str | Path, overrides: Iterable[str] = ()) -> T:
    """Load a YAML config file (with ``_base_`` inheritance and overrides) into ``cls``."""
    origins: dict[str, str] = {}
    tree = load_tree(path, origins)
    tree = apply_overrides(tree, overrides, origins)
    return from_dict(cls, tree, origins, default_origin=str(path))


# ------------------------------------------------------------------------ writing


def to_plain(obj: Any) -> Any:
    """Dataclasses/tuples -> plain dicts/lists suitable for YAML and JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def dump_config(cfg: Any, path: str | Path) -> None:
    """Write the fully resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(to_plain(cfg), sort_keys=False))
