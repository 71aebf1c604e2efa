"""Error types that mean "the user's input is wrong" (reported without a traceback)."""

from __future__ import annotations

from tufl.config.loader import ConfigError
from tufl.data.io import DataError
from tufl.models.weights import WeightsError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DataError, WeightsError, FileExistsError, FileNotFoundError)
