"""The input files of a prediction: files, folders and glob patterns.

Folders are searched recursively, following symbolic links to folders; a link that
leads back to a folder above it (a loop) is an error naming it, as is a link to
itself. Files under the output folder are never inputs, so predicting into a folder
inside the input twice does not predict the first run's outputs. Each file is taken
once, however many links lead to it.
"""

from __future__ import annotations

import errno
import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


class SymlinkLoopError(ValueError):
    """A symbolic link in the input leads back to a folder that contains it."""

    def __init__(self, link: str | os.PathLike[str], target: str | None = None) -> None:
        self.link = Path(link)
        into = f" (it leads back to {target}, a folder that contains it)" if target else ""
        super().__init__(f"symlink loop at {link}{into}")


def collect_inputs(paths: Sequence[str | os.PathLike[str]], videos: bool = False,
                   exclude: str | os.PathLike[str] | None = None) -> list[Path]:
    """Image files named by ``paths``: files, folders (searched recursively) or glob patterns.

    With ``videos``, video files (:data:`VIDEO_SUFFIXES`) are collected as well. Files
    under the folder ``exclude`` (the output folder) are left out. Order: as given,
    folders and patterns sorted; a file met again (also through a link) is dropped.
    Raises ``FileNotFoundError`` naming every entry that matches no input and
    :class:`SymlinkLoopError` naming a link that loops.
    """
    suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES if videos else IMAGE_SUFFIXES
    kind = "an image or video" if videos else "an image"
    skip = os.path.realpath(exclude) if exclude is not None else None
    found: dict[str, Path] = {}
    unmatched: list[str] = []
    for entry in paths:
        text = os.fspath(entry)
        path = Path(text)
        if path.is_file():
            if path.suffix.lower() not in suffixes:
                raise ValueError(f"{path}: not {kind} file (expected one of {', '.join(suffixes)})")
            matches = [path]
        elif path.is_dir():
            matches = sorted(p for p in walk_files(path, skip) if p.suffix.lower() in suffixes)
        else:
            if "**" in text:  # glob follows links without loop checks: walk the folder first
                for _ in walk_files(Path(_fixed_prefix(text)), skip):
                    pass
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True)
                             if Path(p).suffix.lower() in suffixes and os.path.isfile(p))
            for match in matches:
                check_no_loop(match)
        kept = [m for m in matches if skip is None or not _inside(os.path.realpath(m), skip)]
        if not kept:
            unmatched.append(text)
        for match in kept:
            found.setdefault(os.path.realpath(match), match)
    if unmatched:
        raise FileNotFoundError(f"no {'image or video' if videos else 'image'} found for: {', '.join(unmatched)}")
    return list(found.values())


def output_inside_inputs(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> str | None:
    """The first input folder (or fixed folder of a glob pattern) that contains ``out``, else None."""
    target = os.path.realpath(out)
    for entry in paths:
        text = os.fspath(entry)
        folder = text if os.path.isdir(text) else _fixed_prefix(text) if glob.has_magic(text) else None
        if folder is not None and _inside(target, os.path.realpath(folder)):
            return text
    return None


def walk_files(folder: Path, skip: str | None = None) -> Iterator[Path]:
    """Every file under ``folder``, following links to folders, leaving out the folder ``skip``
    (a real path); :class:`SymlinkLoopError` at a link that loops."""
    stack = [(folder, frozenset({_identity(folder)}))]
    while stack:
        current, above = stack.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name, reverse=True)  # popped in name order
        except (PermissionError, FileNotFoundError):  # unreadable or vanished: nothing to predict there
            continue
        for entry in entries:
            path = Path(entry.path)
            if _is_folder(entry):
                identity = _identity(path)
                if identity in above:
                    raise SymlinkLoopError(path, _loop_target(path))
                real = os.path.realpath(path) if entry.is_symlink() or skip is not None else ""
                if skip is None or not _inside(real, skip):
                    stack.append((path, above | {identity}))
            elif entry.is_file():
                yield path
            elif entry.is_symlink():
                _check_link(path)


def _is_folder(entry: os.DirEntry[str]) -> bool:
    """Whether ``entry`` is (or links to) a folder; :class:`SymlinkLoopError` for a link to itself."""
    try:
        return entry.is_dir()
    except OSError as error:  # some Python versions raise ELOOP here instead of answering False
        if error.errno == errno.ELOOP:
            raise SymlinkLoopError(entry.path) from None
        return False


def check_no_loop(path: Path) -> None:
    """:class:`SymlinkLoopError` when a folder of ``path`` is a link to itself or to a folder
    above it (as in the matches of a ``**`` pattern through a loop)."""
    for folder in reversed(path.parents):
        if os.path.islink(folder):
            target = os.path.realpath(folder)
            if _inside(os.path.realpath(folder.parent), target):
                raise SymlinkLoopError(folder, _loop_target(folder))


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def _loop_target(link: Path) -> str:
    """Where a looping link leads, as the user would write it (relative to the link when it is)."""
    try:
        return os.readlink(link)
    except OSError:
        return os.path.realpath(link)


def _check_link(path: Path) -> None:
    """A link that is neither a file nor a folder: dangling (ignored) or a loop (an error)."""
    try:
        path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise SymlinkLoopError(path) from None


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _fixed_prefix(pattern: str) -> str:
    """The folder part of a glob pattern before its first wildcard (``"."`` when none)."""
    parts = []
    for part in Path(pattern).parts[:-1]:
        if glob.has_magic(part):
            break
        parts.append(part)
    return os.path.join(*parts) if parts else "."


def relative_output_names(sources: list[Path]) -> dict[Path, Path]:
    """Output name (relative path without suffix) of each source, unique per source."""
    resolved = [s.resolve() for s in sources]
    root = Path(os.path.commonpath([r.parent for r in resolved]))
    names = {s: r.relative_to(root).with_suffix("") for s, r in zip(sources, resolved, strict=True)}
    seen: dict[Path, Path] = {}
    for source, name in names.items():
        if name in seen:
            if seen[name].resolve() == source.resolve():
                raise ValueError(f"{seen[name]} and {source} are the same file (through a symbolic link); "
                                 "give it once")
            raise ValueError(f"{seen[name]} and {source} would write the same outputs (same name, different suffix)")
        seen[name] = source
    return names
