"""YAML configs validated against typed dataclasses.

* ``_base_: path`` (or a list of paths, relative to the file) inherits from other
  files; mappings merge recursively, everything else is replaced.
* ``--set a.b=value`` overrides are parsed as YAML scalars/lists and applied last.
* Unknown keys, wrong types and impossible values are rejected with a
  :class:`ConfigError` naming the key and the file (or ``--set``) it came from; an
  unknown key gets the close matches at its level (``did you mean data.source?``).
  Impossible values are reported by a dataclass's optional ``problems()`` method;
  a key that was removed or renamed gets the message in the dataclass's optional
  ``REMOVED_KEYS`` mapping.
* Fields typed ``float`` take the float spellings YAML 1.1 reads as strings
  (``1e10``, ``1E-4``, ``inf``, ``nan``) as numbers; every float (in lists too) must
  then be finite, unless its field says ``metadata={ALLOW_NON_FINITE: True}``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
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
# Field metadata key: the field's floats may be NaN or infinite (no field of the experiment
# config takes them; every other float must be finite).
ALLOW_NON_FINITE = "allow_non_finite"
OVERRIDE_ORIGIN = "--set"
# Float spellings YAML 1.1 leaves as strings (1e10, 1E-4, 5.e3) besides its own; inf and nan too.
_FLOAT_TEXT = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|infinity|nan)", re.IGNORECASE)


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


def _merge(base: dict, update: dict, origins: dict[str, str], origin: str | dict[str, str],
           prefix: str = "") -> dict:
    """``update`` merged into ``base`` (mappings recursively); ``origins`` records where each key
    set came from: ``origin`` (a file or ``--set``), or per key the update's own origins (a
    ``_base_`` file's tree, keyed by full path)."""
    out = dict(base)
    for key, value in update.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origins, origin, path + ".")
        else:
            out[key] = value
            _set_origins(value, path, origins, origin)
    return out


def _under(key: str, path: str) -> bool:
    return key == path or key.startswith(path + ".")


def _set_origins(value: Any, path: str, origins: dict[str, str], origin: str | dict[str, str]) -> None:
    """Record ``origin`` for ``path`` and every key under it (replacing what was recorded there)."""
    for key in [k for k in origins if _under(k, path)]:
        del origins[key]
    if not isinstance(origin, str):
        origins.update((k, o) for k, o in origin.items() if _under(k, path))
        return
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
        base_origins: dict[str, str] = {}  # each key keeps the file that set it, however deep the chain
        base_tree = load_tree(path.parent / base, base_origins, _chain + (path,))
        merged = _merge(merged, base_tree, origins, base_origins)
    return _merge(merged, data, origins, str(path))


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
        for depth, part in enumerate(parts[:-1], start=1):
            child = node.get(part)
            if child is None:  # a section the files do not have: it comes from --set
                child = node[part] = {}
                _set_origins(child, ".".join(parts[:depth]), origins, OVERRIDE_ORIGIN)
            if not isinstance(child, dict):
                raise ConfigError([f"{OVERRIDE_ORIGIN} {item!r}: {part!r} is not a section"])
            node = child
        update = {parts[-1]: value}
        merged = _merge(node, update, origins, OVERRIDE_ORIGIN, ".".join(parts[:-1]) + "." if len(parts) > 1 else "")
        node.clear()
        node.update(merged)
    return tree


# ------------------------------------------------------------------------ validation


def origin_of(origins: dict[str, str], key: str, default: str) -> str:
    """The file (or ``--set``) a key's value came from: its own entry or its nearest section's."""
    probe = re.sub(r"(\[\d+\])+$", "", key)  # a list item comes from where its list does
    while probe:
        if probe in origins:
            return origins[probe]
        probe = probe.rpartition(".")[0]
    return default


def _close_matches(word: str, known: list[str]) -> list[str]:
    """The keys of ``known`` nearest to ``word`` (difflib), best first: those about as near as the best."""
    scored = [(difflib.SequenceMatcher(None, word, k).ratio(), k) for k in known]
    best = max((score for score, _ in scored), default=0.0)
    if best < 0.6:
        return []
    return [k for score, k in sorted(scored, key=lambda item: -item[0]) if score >= best - 0.1][:3]


def _as_float(value: Any) -> float | None:
    """``value`` as a float: a number (not a bool) or a float spelling; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)
    return None


def _non_finite(value: Any, key: str) -> Iterable[tuple[str, float]]:
    """The floats of ``value`` (a field's converted value, lists and tuples searched) that are
    NaN or infinite, with their keys (``scale_range[1]``)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield key, value
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _non_finite(item, f"{key}[{index}]")


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
        self.problems.append(f"{origin_of(self.origins, key, self.default_origin)}: {key}: {message}")

    def unknown_key(self, path: str, key: str, known: list[str], prefix: str) -> None:
        """``path`` is no field: suggest the close matches at its level (or list the keys there).
        A key set by ``--set`` is named as typed (``--set data.sourc.root: ...``)."""
        close = _close_matches(key, known)
        if close:
            hint = "did you mean " + " or ".join(f"{prefix}.{k}" if prefix else k for k in close) + "?"
        else:
            hint = f"known keys here: {', '.join(known)}"
        if origin_of(self.origins, path, self.default_origin) != OVERRIDE_ORIGIN:
            self.fail(path, f"unknown key ({hint})")
            return
        typed = [k for k, o in self.origins.items() if o == OVERRIDE_ORIGIN and _under(k, path)]
        leaves = [k for k in typed if not any(other.startswith(k + ".") for other in typed)] or [path]
        self.problems.append(f"{OVERRIDE_ORIGIN} {', '.join(leaves)}: unknown key ({hint})")

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
            number = _as_float(value)
            if number is None:
                self.fail(key, f"expected a number, got {value!r}")
                return value
            return number
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
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs = {}
        known_before = len(self.problems)
        refused: list[str] = []  # a field per NaN or infinity it holds
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in fields:
                removed = getattr(cls, "REMOVED_KEYS", {}).get(key)
                if removed:
                    self.fail(path, removed)
                else:
                    self.unknown_key(path, str(key), sorted(fields), prefix)
                continue
            kwargs[key] = self.convert(hints[key], value, path)
            if not fields[key].metadata.get(ALLOW_NON_FINITE, False):
                for item_key, number in _non_finite(kwargs[key], path):
                    self.fail(item_key, f"must be a finite number, got {number}")
                    refused.append(key)
        obj = cls(**kwargs)
        # Value checks only make sense once every field has the right type (a non-finite number
        # has it); a field refused above is not reported again.
        if len(self.problems) == known_before + len(refused):
            self.value_problems(obj, prefix, set(refused))
        return obj

    def value_problems(self, obj: Any, prefix: str, skip: set[str]) -> None:
        """Report ``obj.problems()`` (if it has the method) under ``prefix``, but for fields in ``skip``."""
        problems = getattr(obj, "problems", None)
        if not callable(problems):
            return
        for message in problems():
            field, _, text = message.partition(":")
            name = field.strip()
            if re.split(r"[.\[]", name, maxsplit=1)[0] in skip:
                continue
            self.fail(f"{prefix}.{name}" if prefix else name, text.strip() or message)


def from_dict(cls: type[T], data: dict, origins: dict[str, str] | None = None,
              default_origin: str = "<config>") -> T:
    """Validate ``data`` against dataclass ``cls``; raise :class:`ConfigError`."""
    validator = _Validator(origins or {}, default_origin)
    obj = validator.build(cls, data, "")
    if validator.problems:
        raise ConfigError(validator.problems)
    return obj


def read_config_tree(path: str | Path, overrides: Iterable[str] = ()) -> tuple[dict, dict[str, str]]:
    """A YAML config file's tree (``_base_`` files merged, ``overrides`` applied) and the origin
    (file or ``--set``) of each key."""
    origins: dict[str, str] = {}
    tree = apply_overrides(load_tree(path, origins), overrides, origins)
    return tree, origins


def load_config(cls: type[T], path: str | Path, overrides: Iterable[str] = ()) -> T:
    """Load a YAML config file (with ``_base_`` inheritance and overrides) into ``cls``."""
    tree, origins = read_config_tree(path, overrides)
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
