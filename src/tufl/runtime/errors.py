"""The error types that mean "the user's input is wrong", reported without a traceback.

Every layer raises these for bad input (a config value, a dataset on disk, a weight
file), so the command line can tell them from bugs: :data:`USER_ERRORS` ends a
command with a one-line message and exit status 2.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


class ConfigError(ValueError):
    """One or more problems in a configuration, each naming its key and origin."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


def _worker_message(message: str) -> str:
    """The original message of an error re-raised from a DataLoader worker.

    torch re-raises a worker's exception as ``type(message)``, ``message`` being
    "Caught X in DataLoader worker process N. Original Traceback ...": the user
    should see the error, not the worker's traceback, whose last line holds it.
    """
    if not message.startswith("Caught ") or "Original Traceback" not in message:
        return message
    last = message.rstrip().splitlines()[-1]
    return last.split("Error: ", 1)[1] if "Error: " in last else last


class DataError(Exception):
    """A dataset cannot be used as it is on disk."""

    def __init__(self, message: str = "") -> None:
        super().__init__(_worker_message(str(message)))


class LayoutError(DataError):
    """A dataset root does not have the expected folder layout."""


class BadFileError(DataError):
    """One file of a dataset is missing, unreadable or not in the expected format."""

    def __init__(self, path: str | os.PathLike[str], problem: str | None = None) -> None:
        if problem is None:  # re-raised from a DataLoader worker with its message only
            path, _, problem = _worker_message(str(path)).partition(": ")
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class WeightsError(RuntimeError):
    """A weight file cannot be read or does not fit the network."""


class FolderLockedError(RuntimeError):
    """Another live process writes the folder (:class:`tufl.runtime.folder_lock.FolderLock`)."""


USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DataError, WeightsError, FolderLockedError, FileExistsError,
                                            FileNotFoundError)
