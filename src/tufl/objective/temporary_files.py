"""Leftovers of interrupted writes: tufl's own temporary files and staging folders.

:func:`tufl.runtime.atomic.atomic_path` writes ``.<name>.<8 random characters>.tmp``
beside its target and renames it into place; a process killed before the rename
leaves that file behind. Staged folders (per-frame label maps of a video) are named
the same way, and a folder being replaced is first moved to ``.<name>.<random>.old``.
Only names of exactly this form are ever removed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp|old)$")
"""A name made by :func:`tempfile.mkstemp` / ``mkdtemp`` with tufl's prefix and suffixes."""


def temporary_leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """tufl's temporary files and folders anywhere under ``folder`` (not following symlinks)."""
    found: list[Path] = []
    if not Path(folder).is_dir():
        return found
    for parent, dirs, files in os.walk(folder):
        for name in files:
            if TEMPORARY_NAME.match(name):
                found.append(Path(parent, name))
        for name in list(dirs):
            if TEMPORARY_NAME.match(name):
                found.append(Path(parent, name))
                dirs.remove(name)  # a staging folder goes as a whole
    return sorted(found)


def remove_temporary_leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove :func:`temporary_leftovers` of ``folder``; returns what was removed.

    Call it only while no other process writes the folder (hold its
    :class:`~tufl.runtime.folder_lock.FolderLock`).
    """
    found = temporary_leftovers(folder)
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found
