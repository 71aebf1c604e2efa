"""``tufl show-config --config FILE [--set k=v ...]``: print the fully resolved configuration."""

from __future__ import annotations

import argparse
import sys

import yaml

from tufl.cli.arguments import add_config_arguments, load_run_config
from tufl.runtime.errors import ConfigError
from tufl.runtime.typed_config import to_plain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_run_config(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(yaml.safe_dump(to_plain(cfg), sort_keys=False), end="")
    return 0
