"""Class definition files: reading and checking one (your own class set, its label values and
its link to a source).

A class definition file (YAML) declares the classes a model predicts and how label
maps encode them::

    classes:                       # one entry per raw label value (or per class)
      - {value: 1, train_id: 0, name: road, color: [128, 64, 128]}
      - {value: 2, train_id: 0}                     # several values may share a class
      - {value: 3, train_id: 1, name: vehicle, color: [0, 0, 142]}
    ignore: [0, 255]               # raw values that are not evaluated (train id 255)
    from_source:                   # optional: official source classes -> these classes
      road: [road, sidewalk]
      vehicle: [car, truck, bus, train, motorcycle, bicycle]

Train ids must be ``0..C-1`` with ``2 <= C <= 255`` (255 is the ignore id), each
with one name, given once: the other entries of a merged class may leave ``name`` out.
An entry without ``value`` only declares a class (for data whose labels come from
``from_source``). ``from_source`` maps class names of the official 19/16/13
class sets (GTA5, SYNTHIA, Cityscapes, Cross-City labels) to the classes here; source
classes it does not list are ignored. See docs/own-data.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tufl.data.io import BadFileError
from tufl.data.labels import IGNORE_INDEX, generic_palette

MAX_RAW_VALUE = 65535
# Marks a raw value the class file does not mention in :meth:`ClassSet.value_lut`.
UNMAPPED = 256


class ClassFileError(BadFileError):
    """A class definition file is missing, unreadable or inconsistent."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a mapping key given twice (YAML would keep the last)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


@dataclass(frozen=True)
class ClassSet:
    """The classes of a class definition file (see the module docstring)."""

    path: str
    names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]
    # Raw label value -> train id (255 for ignored values).
    value_to_train_id: tuple[tuple[int, int], ...]
    # Official source class name -> target class name.
    from_source: tuple[tuple[str, str], ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def known_values(self) -> frozenset[int]:
        """Raw values the file maps (to a class or to ignore)."""
        return frozenset(v for v, _ in self.value_to_train_id)

    def value_lut(self) -> np.ndarray:
        """``uint16`` look-up table (65536 entries): raw value -> train id, 255 ignore,
        :data:`UNMAPPED` (256) for a value the file does not mention."""
        lut = np.full(MAX_RAW_VALUE + 1, UNMAPPED, dtype=np.uint16)
        for value, train_id in self.value_to_train_id:
            lut[value] = train_id
        lut.setflags(write=False)
        return lut

    def palette(self) -> np.ndarray:
        """``(256, 3)`` uint8 colour table: train id -> colour, black elsewhere."""
        table = np.zeros((256, 3), dtype=np.uint8)
        table[: self.num_classes] = np.asarray(self.colours, dtype=np.uint8)
        return table

    def source_lut(self, source_names: tuple[str, ...], source_title: str) -> np.ndarray:
        """``uint8`` table (256 entries): train id of the source class set -> train id here.

        Needs a ``from_source`` section; source classes it does not list become 255.
        """
        if not self.from_source:
            raise ClassFileError(
                self.path,
                f"has no from_source section, so it cannot map {source_title} labels to its {self.num_classes} "
                f"classes (add from_source: {{<class>: [<{source_title} class>, ...]}})",
            )
        unknown = sorted(name for name, _ in self.from_source if name not in source_names)
        if unknown:
            raise ClassFileError(
                self.path,
                f"from_source names {unknown}, which are not {source_title} classes {list(source_names)}",
            )
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        for source, target in self.from_source:
            lut[source_names.index(source)] = self.names.index(target)
        lut.setflags(write=False)
        return lut


def _fail(path: str, problem: str) -> ClassFileError:
    return ClassFileError(path, f"class file: {problem}")


def _int(value: Any, what: str, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(path, f"{what} must be an integer in {low}..{high}, got {value!r}")
    return value


def _colour(value: Any, where: str, path: str) -> tuple[int, int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise _fail(path, f"{where}: color must be [r, g, b], got {value!r}")
    r, g, b = (_int(c, f"{where}: color component", path, 0, 255) for c in value)
    return (r, g, b)


@dataclass
class _Entries:
    """What the ``classes`` entries say, gathered per train id while they are checked."""

    values: dict[int, int] = field(default_factory=dict)  # raw value -> train id
    names: dict[int, str] = field(default_factory=dict)
    colours: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    entries: dict[int, list[int]] = field(default_factory=dict)  # train id -> its entry numbers


def _read_entry(entry: Any, number: int, found: _Entries, path: str) -> None:
    """Check one ``classes`` entry and add it to ``found``."""
    where = f"classes entry {number}"
    if not isinstance(entry, dict):
        raise _fail(path, f"{where} must be a mapping, got {entry!r}")
    unknown = sorted(set(entry) - {"value", "train_id", "name", "color", "colour"})
    if unknown:
        raise _fail(path, f"{where}: unknown keys {unknown}")
    if "train_id" not in entry:
        missing = "a train_id and a name" if "name" not in entry else "a train_id"
        raise _fail(path, f"{where}: needs {missing} (the class its values belong to)")
    train_id = _int(entry["train_id"], f"{where}: train_id", path, 0, 254)
    found.entries.setdefault(train_id, []).append(number)
    if "name" in entry:  # needed once per class: merged entries may leave it out
        name = entry["name"]
        if not isinstance(name, str) or not name.strip():
            raise _fail(path, f"{where}: name must be a non-empty string, got {name!r}")
        if found.names.setdefault(train_id, name) != name:
            raise _fail(path, f"{where}: train id {train_id} is named both {found.names[train_id]!r} and {name!r}")
    colour = entry.get("color", entry.get("colour"))
    if colour is not None:
        colour = _colour(colour, where, path)
        if found.colours.setdefault(train_id, colour) != colour:
            raise _fail(path, f"{where}: train id {train_id} has two colours")
    if "value" in entry:
        value = _int(entry["value"], f"{where}: value", path, 0, MAX_RAW_VALUE)
        if value in found.values:
            raise _fail(path, f"{where}: raw value {value} is defined twice")
        found.values[value] = train_id


def _class_names(found: _Entries, path: str) -> tuple[str, ...]:
    """The names of train ids ``0..C-1``: every class named once, ids contiguous, names distinct."""
    for train_id, numbers in sorted(found.entries.items()):
        if train_id not in found.names:
            listed = ", ".join(map(str, numbers))
            raise _fail(path, f"train id {train_id} has no name: give one of its entries "
                              f"(classes entr{'ies' if len(numbers) > 1 else 'y'} {listed}) a name")
    count = len(found.names)
    if sorted(found.names) != list(range(count)):
        missing = sorted(set(range(max(found.names) + 1)) - set(found.names))
        raise _fail(path, f"train ids must be contiguous 0..{count - 1}; missing {missing}")
    by_name: dict[str, int] = {}
    for train_id, name in found.names.items():
        if by_name.setdefault(name, train_id) != train_id:
            raise _fail(path, f"class name {name!r} is used by train ids {by_name[name]} and {train_id}")
    if count < 2:
        raise _fail(path, f"needs at least 2 classes (e.g. background and foreground), got {count}")
    return tuple(found.names[i] for i in range(count))


def parse_class_set(tree: Any, path: str) -> ClassSet:
    """Validate the content of a class definition file (see the module docstring)."""
    if not isinstance(tree, dict) or not isinstance(tree.get("classes"), list) or not tree["classes"]:
        raise _fail(path, "needs a non-empty list 'classes' of {value, train_id, name, color} entries")
    extra = sorted(set(tree) - {"classes", "ignore", "from_source"})
    if extra:
        raise _fail(path, f"unknown sections {extra} (expected classes, ignore, from_source)")
    found = _Entries()
    for number, entry in enumerate(tree["classes"], start=1):
        _read_entry(entry, number, found, path)
    ignore = tree.get("ignore", [])
    if not isinstance(ignore, list):
        raise _fail(path, f"ignore must be a list of raw values, got {ignore!r}")
    for value in ignore:
        value = _int(value, "ignore value", path, 0, MAX_RAW_VALUE)
        if value in found.values:
            raise _fail(path, f"raw value {value} is both ignored and a class value (or ignored twice)")
        found.values[value] = IGNORE_INDEX
    names = _class_names(found, path)
    fallback = generic_palette(len(names))
    palette = tuple(found.colours.get(i, fallback[i]) for i in range(len(names)))
    return ClassSet(path, names, palette, tuple(sorted(found.values.items())), _from_source(tree, names, path))


def _from_source(tree: dict, names: tuple[str, ...], path: str) -> tuple[tuple[str, str], ...]:
    section = tree.get("from_source")
    if section is None:
        return ()
    if not isinstance(section, dict) or not section:
        raise _fail(path, "from_source must map class names to lists of source class names")
    pairs: dict[str, str] = {}
    for target, sources in section.items():
        if target not in names:
            raise _fail(path, f"from_source: {target!r} is not a class of this file {list(names)}")
        sources = [sources] if isinstance(sources, str) else sources
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise _fail(path, f"from_source: {target}: expected a list of source class names, got {sources!r}")
        for source in sources:
            if source in pairs:
                raise _fail(path, f"from_source: source class {source!r} is mapped to both "
                                  f"{pairs[source]!r} and {target!r}")
            pairs[source] = target
    return tuple(pairs.items())


def load_class_set(path: str | os.PathLike[str]) -> ClassSet:
    """Read and validate a class definition file (raises :class:`ClassFileError`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise _fail(path, "file not found")
    return _load_cached(path, os.stat(path).st_mtime_ns)


@lru_cache(maxsize=32)
def _load_cached(path: str, mtime_ns: int) -> ClassSet:
    try:
        tree = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _fail(path, f"cannot read it ({exc})") from None
    return parse_class_set(tree, path)
