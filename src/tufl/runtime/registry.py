"""Named plug-in points: datasets, networks, unsupervised losses, objective terms.

A :class:`Registry` maps a name, as configs write it, to what the name builds. Adding
a plug-in is one class and one :meth:`Registry.register` call (or an entry where the
registry is filled); the config choices (``data.*.name``, ``model.arch``,
``loss.unsupervised``, the objective's terms) are read from the registry when a
config is checked, so a plug-in registered by the user's own module is usable from a
config without any other edit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered ``name -> plug-in`` mapping; ``kind`` names it in messages ("dataset")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None) -> T | Callable[[T], T]:
        """Add ``entry`` under ``name``; without ``entry``, a class decorator that adds it."""
        if entry is None:
            return lambda e: self.register(name, e)  # type: ignore[return-value]
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self._entries[name]!r})")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a plug-in registered for a while, e.g. by a test)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The plug-in called ``name``; a ValueError listing the known names otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(self.unknown(name)) from None

    def unknown(self, name: object) -> str:
        """The message for a name that is not registered."""
        return f"unknown {self.kind} {name!r}; expected one of {', '.join(self._entries)}"

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
