"""Finding the files of a dataset split: list files, folder scans, the expected folders.

Shared by every dataset layout (:class:`tufl.data.base.SegDataset` and its subclasses,
which import these names from :mod:`tufl.data.base` too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tufl.data.io import BadFileError, LayoutError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class SampleFiles:
    """The files of one sample. ``name`` is relative to the image folder of the split."""

    name: str
    image: str
    label: str | None


def read_name_list(path: str | os.PathLike[str]) -> list[str]:
    """Relative sample names from a split file: one per line, first column, ``#`` comments.

    This is the format of the ADVENT/DACS split files (``00001.png``,
    ``frankfurt/frankfurt_000000_000294_leftImg8bit.png``, ``pano_00368_0_0``).
    """
    if not os.path.isfile(path):
        raise BadFileError(path, "list file not found")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadFileError(path, f"cannot read list file ({exc})") from None
    names = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name = line.split()[0].replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts:
            raise BadFileError(path, f"line {number}: {name!r} must be a relative path inside the dataset")
        names.append(name)
    if not names:
        raise BadFileError(path, "list file names no samples")
    return names


def scan_images(folder: Path, pattern: str = "*") -> list[str]:
    """Sorted relative POSIX paths of the image files under ``folder`` matching ``pattern``."""
    found = [
        p.relative_to(folder).as_posix()
        for p in folder.glob(pattern)
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    ]
    return sorted(found)


def resolve_listed_names(folder: Path, names: list[str]) -> list[str]:
    """Give list entries without an extension (``pano_00368_0_0``) the one found on disk.

    An entry whose file does not exist keeps ``.png``, so loading it names that file.
    """
    resolved = []
    for name in names:
        if PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS:
            resolved.append(name)
            continue
        found = next((name + ext for ext in IMAGE_EXTENSIONS if (folder / (name + ext)).is_file()), None)
        resolved.append(found or name + ".png")
    return resolved


def require_folders(root: Path, folders: list[str], dataset: str) -> None:
    """Raise LayoutError naming the expected sub-folders when ``root`` lacks any of them."""
    expected = ", ".join(f"{f}/" for f in folders)
    if not root.is_dir():
        raise LayoutError(f"{root}: {dataset} root not found (expected a folder with {expected})")
    missing = [f for f in folders if not (root / f).is_dir()]
    if missing:
        names = ", ".join(f"{f}/" for f in missing)
        raise LayoutError(f"{root}: not a {dataset} root: missing {names} (expected {expected})")


@dataclass(frozen=True)
class SplitLayout:
    """Where the files of one split lie, as :meth:`SegDataset.locate` resolves them."""

    root: Path  # the folder the other paths are relative to
    images: str  # image folder
    labels: str | None  # label folder; None when the split has no labels
    labels_required: bool  # the label folder must exist (otherwise labels are used when it does)
    split: str  # the split as the dataset names it
