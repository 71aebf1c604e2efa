"""Your own data: ``folder`` (images with or without label maps) and ``images`` (unlabelled).

Images are found under ``root``: in the folders or globs of ``images`` (``**`` recurses;
a folder is searched recursively; default: ``root`` itself), or in a list file whose
lines are ``image [label]`` paths relative to ``root``. Sample names are paths relative
to ``root``.

The label of an image (``folder`` with ``labels``) is found by ``label_rule``:

* ``"stem"``: the image's path relative to its image folder (the folder, or the fixed
  part of the glob before its first wildcard), with the extension ``.png``, under the
  label folder: ``images/a/x.jpg`` -> ``labels/a/x.png``;
* ``"OLD->NEW"``: the same relative path with the suffix ``OLD`` replaced by ``NEW``
  (``_leftImg8bit.png->_gtFine_labelIds.png``).

Label maps are 8-bit grey PNGs, palette PNGs (the palette *index* is the raw value)
or 16-bit grey PNGs; a class definition file (:mod:`tufl.data.class_set`) maps their
raw values to train ids, and a value it does not map is an error naming the file.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from tufl.data.base import IMAGE_EXTENSIONS, SampleFiles, SegDataset, SplitLayout
from tufl.data.class_set import UNMAPPED, ClassSet, load_class_set
from tufl.data.io import BadFileError, LayoutError, open_image

_WILDCARDS = set("*?[")
_LABEL_MODES_8BIT = ("L", "P")
_LABEL_MODES_16BIT = ("I;16", "I;16B", "I;16L", "I")
_SHOWN = 3


class UnmappedLabelError(BadFileError):
    """A label map holds raw values that the class definition file does not map."""

    def __init__(self, path: str | os.PathLike[str], values: list[int] | None = None, class_file: str = "") -> None:
        if values is None:  # re-raised from a DataLoader worker with its message only
            self.values = []
            super().__init__(path)
            return
        self.values = values
        shown = ", ".join(map(str, values[:10])) + (", ..." if len(values) > 10 else "")
        super().__init__(path, f"label values {shown} are not mapped by the class file {class_file}")


def read_label_values(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """Raw values of an 8-bit grey, palette (indices) or 16-bit grey PNG label map,
    ``uint8`` or ``uint16`` ``[H, W]``; refused from its header over ``max_pixels``
    (:func:`tufl.data.io.open_image`)."""
    image = open_image(path, max_pixels)
    if image.mode in _LABEL_MODES_8BIT:
        return np.asarray(image, dtype=np.uint8)
    if image.mode in _LABEL_MODES_16BIT:
        array = np.asarray(image)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise BadFileError(path, f"label values {array.min()}..{array.max()} do not fit 16 bits")
        return array.astype(np.uint16)
    raise BadFileError(
        path, f"label image mode {image.mode!r}: expected a single-channel label map "
              "(8-bit grey, palette or 16-bit grey PNG)"
    )


def _is_glob(pattern: str) -> bool:
    return bool(_WILDCARDS & set(pattern))


def _glob_base(pattern: str) -> str:
    """The fixed folder part of a glob (``frames/**/*.jpg`` -> ``frames``)."""
    parts = []
    for part in PurePosixPath(pattern).parts[:-1]:
        if _is_glob(part):
            break
        parts.append(part)
    return PurePosixPath(*parts).as_posix() if parts else ""


def _check_relative(text: str, where: str) -> str:
    text = text.replace("\\", "/")
    if text.startswith("/") or ".." in PurePosixPath(text).parts:
        raise LayoutError(f"{where}: {text!r} must be a path relative to the dataset root, inside it")
    return text


class FolderDataset(SegDataset):
    """Images (and label maps) of your own data; see the module docstring."""

    name = "folder"
    root_title = "folder dataset"
    supported_num_classes = tuple(range(2, 256))
    label_pattern = "**/*.png"
    labels_allowed = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = None,
        num_classes: int | None = None,
        list_file: str | None = None,
        *args: Any,
        images: tuple[str, ...] | list[str] = (),
        labels: str | None = None,
        label_rule: str = "stem",
        classes: str | None = None,
        require_label_files: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """``resize``, ``interpolation``, ``skip_bad_files`` and ``max_image_pixels`` (``args``,
        ``kwargs``) as for :class:`SegDataset`; ``require_label_files`` (default: unless skipping
        bad files) makes a missing label file an error now."""
        if labels is not None and not self.labels_allowed:
            raise ValueError(f"{self.name}: an images dataset has no labels; use name: folder for labelled data")
        if images and list_file:
            raise ValueError(f"{self.name}: give either images (folders/globs) or list_file, not both")
        self.class_set: ClassSet | None = load_class_set(classes) if classes else None
        if self.class_set is not None:
            if num_classes is not None and num_classes != self.class_set.num_classes:
                raise ValueError(
                    f"{self.name}: the class file {classes} defines {self.class_set.num_classes} classes "
                    f"{list(self.class_set.names)}, but the model predicts {num_classes} (model.num_classes)"
                )
            num_classes = self.class_set.num_classes
        elif num_classes is None:
            raise ValueError(f"{self.name}: give a class definition file (classes) or the number of classes")
        if not Path(root).is_dir():
            raise LayoutError(f"{root}: root folder of the {self.name} dataset not found")
        self._rule = self._parse_rule(label_rule)
        self._patterns = tuple(_check_relative(p, f"{self.name}: images") for p in images) or ("",)
        self._labels_rel = None if labels is None else _check_relative(labels, f"{self.name}: labels").rstrip("/")
        if self._labels_rel is not None and not list_file and not (Path(root) / self._labels_rel).is_dir():
            raise LayoutError(f"{Path(root) / self._labels_rel}: label folder not found "
                              f"(labels {labels!r}, relative to the root)")
        self._listed = self._read_list(Path(list_file)) if list_file else None
        self._label_of: dict[str, str] = {}
        if self._has_labels() and self.class_set is None:
            raise ValueError(f"{self.name}: label maps need a class definition file (classes) that maps "
                             "their values to classes")
        super().__init__(root, split or "train", num_classes, list_file, *args, **kwargs)
        if self._listed is not None and self._has_labels():
            # List-file labels are relative to the root (the base class names label folders).
            self.samples = [SampleFiles(s.name, s.image, str(Path(self.root) / self._label_of[s.name]))
                            for s in self.samples]
            self.has_labels = True
        self._lut = None if self.class_set is None else self.class_set.value_lut()
        self._lut8 = None if self._lut is None else np.minimum(self._lut, 255).astype(np.uint8)
        require = (not self.skip_bad_files) if require_label_files is None else require_label_files
        if require and self._has_labels():
            self._require_label_files()

    # --- layout -------------------------------------------------------------------------
    def _has_labels(self) -> bool:
        if self._listed is not None:
            return any(label is not None for _, label in self._listed)
        return self._labels_rel is not None

    def locate(self, root: Path, split: str) -> SplitLayout:  # type: ignore[override]
        if self._listed is not None:
            return SplitLayout(root, "", "" if self._has_labels() else None, labels_required=False, split=split)
        return SplitLayout(root, "", self._labels_rel, labels_required=self._labels_rel is not None, split=split)

    def _parse_rule(self, rule: str) -> tuple[str, str] | None:
        if rule == "stem":
            return None
        old, sep, new = rule.partition("->")
        if not sep or not old or not new:
            raise ValueError(f"{self.name}: label_rule must be 'stem' or 'OLD->NEW' "
                             f"(e.g. '_leftImg8bit.png->_gtFine_labelIds.png'), got {rule!r}")
        return old, new

    def _read_list(self, path: Path) -> list[tuple[str, str | None]]:
        if not path.is_file():
            raise BadFileError(path, "list file not found")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadFileError(path, f"cannot read list file ({exc})") from None
        entries: list[tuple[str, str | None]] = []
        for number, line in enumerate(lines, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            columns = line.split()
            if len(columns) > 2:
                raise BadFileError(path, f"line {number}: expected 'image [label]', got {len(columns)} columns")
            where = f"{path}: line {number}"
            image = _check_relative(columns[0], where)
            label = _check_relative(columns[1], where) if len(columns) == 2 else None
            entries.append((image, label))
        if not entries:
            raise BadFileError(path, "list file names no samples")
        if len({label is None for _, label in entries}) > 1:
            raise BadFileError(path, "some lines name a label and others do not: give all or none")
        return entries

    def _image_names(self, folder: Path, list_file: str | None) -> list[str]:
        if self._listed is not None:
            for image, label in self._listed:
                if label is not None:
                    self._label_of[image] = label
            return [image for image, _ in self._listed]
        found: dict[str, str] = {}
        label_folder = None if self._labels_rel is None else (folder / self._labels_rel).resolve()
        for pattern in self._patterns:
            matches = self._match(folder, pattern, label_folder)
            if not matches:
                raise LayoutError(f"{folder / pattern if pattern else folder}: no images found "
                                  f"({', '.join(IMAGE_EXTENSIONS)})")
            base = pattern if not _is_glob(pattern) else _glob_base(pattern)
            for name in matches:
                found.setdefault(name, base)
        names = sorted(found)
        for name in names:
            self._label_of[name] = self._label_for(name, found[name])
        return names

    @staticmethod
    def _match(root: Path, pattern: str, label_folder: Path | None) -> list[str]:
        if _is_glob(pattern):
            paths = [Path(p) for p in glob.glob(str(root / pattern), recursive=True)]
        else:
            start = root / pattern
            if start.is_file():
                paths = [start]
            elif start.is_dir():
                paths = list(start.rglob("*"))
            else:
                raise LayoutError(f"{start}: image folder not found (images {pattern!r}, relative to the root)")
        out = []
        for path in paths:
            if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
                continue
            if label_folder is not None and label_folder in path.resolve().parents:
                continue  # label maps inside the root are not images
            out.append(path.relative_to(root).as_posix())
        return out

    def _label_for(self, name: str, base: str) -> str:
        relative = name[len(base) + 1:] if base and name.startswith(base + "/") else name
        if self._rule is None:
            return str(PurePosixPath(relative).with_suffix(".png"))
        old, new = self._rule
        if not relative.endswith(old):
            # No label can be named: point at a file that cannot exist so that the
            # missing-label check names this image.
            return relative + f" (name does not end with {old!r})"
        return relative[: -len(old)] + new

    def label_name(self, image_name: str) -> str:
        return self._label_of[image_name]

    def _require_label_files(self) -> None:
        missing = [s for s in self.samples if s.label is not None and not os.path.isfile(s.label)]
        if not missing:
            return
        shown = "; ".join(f"{os.path.relpath(s.image, self.root)} -> {os.path.relpath(s.label, self.root)}"
                          for s in missing[:_SHOWN])
        more = f" (and {len(missing) - _SHOWN} more)" if len(missing) > _SHOWN else ""
        raise BadFileError(self.root, f"no label file for {len(missing)} of {len(self.samples)} images "
                                      f"(label_rule {self._rule_text()}): {shown}{more}")

    def _rule_text(self) -> str:
        return "stem" if self._rule is None else f"{self._rule[0]}->{self._rule[1]}"

    # --- labels -------------------------------------------------------------------------
    @property
    def raw_label_ids(self) -> frozenset[int]:  # type: ignore[override]
        return self.class_set.known_values if self.class_set is not None else frozenset()

    def read_stored_label(self, path: str) -> np.ndarray:
        """The label file's raw values, unchecked (check-data reports unmapped ones)."""
        return read_label_values(path, self.max_image_pixels)

    def read_raw_label(self, path: str) -> np.ndarray:
        """Raw values, checked against the class file (:class:`UnmappedLabelError`)."""
        raw = read_label_values(path, self.max_image_pixels)
        assert self._lut is not None and self.class_set is not None
        unmapped = self._lut[raw] == UNMAPPED
        if unmapped.any():
            raise UnmappedLabelError(path, np.unique(raw[unmapped]).tolist(), self.class_set.path)
        return raw

    @property
    def label_lut(self) -> np.ndarray:
        if self._lut8 is None:
            raise ValueError(f"{self.name}: no class definition file, so no label look-up table")
        return self._lut8


class ImagesDataset(FolderDataset):
    """Unlabelled images of any (and mixed) sizes: a target domain (see module docstring).

    Without ``resize`` every image keeps its size; training crops (``target_views``)
    give the network same-sized views, so mixed sizes work, but each image is then seen
    at its own scale: set ``resize`` when the sizes differ much.
    """

    name = "images"
    root_title = "images folder"
    labels_allowed = False
