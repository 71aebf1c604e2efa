"""Options and error reporting shared by the commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--config FILE`` and repeatable ``--set key.path=value`` overrides."""
    parser.add_argument("--config", required=required, help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.lr=1e-4 (repeatable)")


def load_run_config(args: argparse.Namespace) -> Any:
    """The validated experiment config (:func:`tufl.config.load_experiment`) named by
    ``--config``/``--set``."""
    from tufl.config import load_experiment

    return load_experiment(args.config, args.overrides)


def report_error(error: BaseException, status: int = 2) -> int:
    """Print ``error: <message>`` to stderr; returns ``status`` (2: bad input)."""
    print(f"error: {error}", file=sys.stderr)
    return status
