"""Class sets: a class definition file applied to an official dataset, and the classes a
model predicts (:class:`ModelClasses`), which travel with it in checkpoints.

The file format and its checks are :mod:`tufl.data.class_file` (its names are importable
from here too). See docs/own-data.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tufl.data.class_file import (  # noqa: F401 - the class-file names, importable from here
    MAX_RAW_VALUE,
    UNMAPPED,
    ClassFileError,
    ClassSet,
    load_class_set,
    parse_class_set,
)
from tufl.data.labels import IGNORE_INDEX, SUPPORTED_NUM_CLASSES, class_names, generic_palette, palette


class _LookUp:
    """Picklable ``raw -> lut[raw]`` (a dataset's label mapping, sent to loader workers)."""

    def __init__(self, lut: np.ndarray) -> None:
        self.lut = lut

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return self.lut[raw]


def apply_class_set(dataset: Any, class_set: ClassSet, num_classes: int | None = None) -> Any:
    """Make an official dataset (read with its own 19/16/13 classes) give the train ids of
    ``class_set`` through its ``from_source`` section; returns the dataset."""
    if num_classes is not None and num_classes != class_set.num_classes:
        raise ValueError(
            f"{dataset.name}: the class file {class_set.path} defines {class_set.num_classes} classes "
            f"{list(class_set.names)}, but the model predicts {num_classes} (model.num_classes)"
        )
    native = dataset.num_classes
    remap = class_set.source_lut(class_names(native), f"{native}-class {dataset.name}")
    composed = remap[dataset.label_lut]
    composed.setflags(write=False)
    dataset.map_label = _LookUp(composed)  # instance attribute: shadows SegDataset.map_label
    dataset.num_classes = class_set.num_classes
    dataset.class_set = class_set
    return dataset


def class_set_of_config(stored: Any) -> ClassSet | None:
    """The class definition file a run's stored config names (``data.val``, ``data.target``,
    then ``data.source``), when it is still readable; ``None`` otherwise.

    For ``tufl predict`` and other consumers of a checkpoint: its ``["config"]`` entry
    gives class names and colours (``ClassSet.palette()``) of a custom class set.
    """
    data = stored.get("data") if isinstance(stored, dict) else None
    for section in ("val", "target", "source"):
        ds = (data or {}).get(section) or {}
        path = ds.get("classes") if isinstance(ds, dict) else None
        if path:
            try:
                return load_class_set(path)
            except ClassFileError:
                continue
    return None


@dataclass(frozen=True)
class ModelClasses:
    """The classes a model predicts, stored with it (checkpoints, exported models): train id
    ``i`` is ``names[i]``, drawn in ``colours[i]``; ``ignore_index`` marks unlabelled pixels.

    ``raw_values`` is the class file's raw label value -> train id map when the model was
    trained on labels in that encoding (your own data), empty for the official class sets;
    ``origin`` says where the set came from (the class file, or the Cityscapes set).
    """

    names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX
    raw_values: tuple[tuple[int, int], ...] = ()
    origin: str = ""

    @classmethod
    def cityscapes(cls, num_classes: int) -> ModelClasses:
        """The 19-, 16- or 13-class Cityscapes set (SYNTHIA and Cross-City use its subsets)."""
        colours = tuple(tuple(int(c) for c in row) for row in palette(num_classes)[:num_classes])
        return cls(class_names(num_classes), colours, origin=f"Cityscapes ({num_classes} classes)")  # type: ignore[arg-type]

    @classmethod
    def of_class_set(cls, class_set: ClassSet) -> ModelClasses:
        """The classes of a class definition file."""
        return cls(class_set.names, class_set.colours, raw_values=class_set.value_to_train_id, origin=class_set.path)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def is_cityscapes(self) -> bool:
        """Whether these are the 19-, 16- or 13-class Cityscapes set, in its order (the official
        benchmarks: evaluation follows their protocol, label ids can be written)."""
        return self.num_classes in SUPPORTED_NUM_CLASSES and self.names == class_names(self.num_classes)

    def palette(self) -> np.ndarray:
        """``(256, 3)`` uint8 colour table: train id -> colour, black elsewhere."""
        table = np.zeros((256, 3), dtype=np.uint8)
        table[: self.num_classes] = np.asarray(self.colours, dtype=np.uint8)
        return table

    def differences(self, other: ModelClasses, mine: str = "here", theirs: str = "there") -> list[str]:
        """What differs between two class sets in what a model's outputs mean: the class count
        and each train id's name (colours and raw encodings aside), ``mine`` and ``theirs``
        naming the two sides. Empty when they agree."""
        if self.names == other.names:
            return []
        out = ([f"{self.num_classes} classes in {mine}, {other.num_classes} in {theirs}"]
               if self.num_classes != other.num_classes else [])
        for train_id in range(max(self.num_classes, other.num_classes)):
            a = self.names[train_id] if train_id < self.num_classes else "-"
            b = other.names[train_id] if train_id < other.num_classes else "-"
            if a != b:
                out.append(f"train id {train_id}: {a!r} in {mine}, {b!r} in {theirs}")
        return out

    def to_record(self) -> dict[str, Any]:
        """Plain values (lists, ints, strings) for a checkpoint or a JSON file."""
        return {"names": list(self.names), "colours": [list(c) for c in self.colours],
                "ignore_index": self.ignore_index, "raw_values": [list(p) for p in self.raw_values],
                "origin": self.origin}

    @classmethod
    def from_record(cls, record: Any, source: str = "checkpoint") -> ModelClasses:
        """The inverse of :meth:`to_record`; a :class:`ClassFileError` naming ``source`` when it is malformed."""
        try:
            names = tuple(str(n) for n in record["names"])
            colours = tuple((int(r), int(g), int(b)) for r, g, b in record["colours"])
            raw = tuple((int(v), int(i)) for v, i in record.get("raw_values", ()))
            classes = cls(names, colours, int(record.get("ignore_index", IGNORE_INDEX)), raw,
                          str(record.get("origin", "")))
        except (KeyError, TypeError, ValueError) as error:
            raise ClassFileError(source, f"malformed class set ({error!r})") from None
        if len(colours) != len(names) or len(names) < 2:
            raise ClassFileError(source, f"malformed class set: {len(names)} names, {len(colours)} colours")
        return classes


def checkpoint_classes(state: Any, source: str = "checkpoint") -> ModelClasses | None:
    """The classes a tufl checkpoint's model predicts: the class set stored in it (``"classes"``);
    for a checkpoint of an earlier tufl, the class file its stored config names (when still
    readable), else the Cityscapes set of its 19/16/13 classes; None when nothing tells."""
    if not isinstance(state, dict):
        return None
    if "classes" in state:
        return ModelClasses.from_record(state["classes"], source)
    class_set = class_set_of_config(state.get("config"))
    if class_set is not None:
        return ModelClasses.of_class_set(class_set)
    count = state.get("num_classes") or (state.get("model_config") or {}).get("num_classes")
    return ModelClasses.cityscapes(count) if count in SUPPORTED_NUM_CLASSES else None


def run_classes(sections: Sequence[tuple[str, Any]], num_classes: int) -> ModelClasses:
    """The classes a run's model predicts: those of the class definition files its data
    sections name (``(key, section)`` pairs such as ``("source", cfg.data.source)``; every
    file must define the same classes in the same order), else the Cityscapes set of
    ``num_classes``. A :class:`ClassFileError` names the file that disagrees."""
    found = [(key, load_class_set(ds.classes)) for key, ds in sections if ds is not None and ds.classes]
    if not found:
        if num_classes in SUPPORTED_NUM_CLASSES:
            return ModelClasses.cityscapes(num_classes)
        names = tuple(f"class_{i}" for i in range(num_classes))
        return ModelClasses(names, generic_palette(num_classes), origin=f"{num_classes} unnamed classes")
    (first_key, first), *others = found
    for key, class_set in others:
        differ = ModelClasses.of_class_set(first).differences(
            ModelClasses.of_class_set(class_set), f"data.{first_key}.classes", f"data.{key}.classes")
        if differ:
            raise ClassFileError(class_set.path, f"defines other classes than {first.path}: " + "; ".join(differ))
    with_values = next((cs for _, cs in found if cs.value_to_train_id), first)
    return ModelClasses.of_class_set(with_values)
