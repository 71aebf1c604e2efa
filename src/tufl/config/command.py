"""``tufl show-config``: print the fully resolved configuration of a YAML file."""

from __future__ import annotations

import argparse
import sys

import yaml

from tufl.config.loader import ConfigError, load_config, to_plain


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--config FILE`` and repeatable ``--set key.path=value`` overrides."""
    parser.add_argument("--config", required=required, help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.lr=1e-4 (repeatable)")


def load_run_config(args: argparse.Namespace):  # noqa: ANN201 - returns tufl.config.schema.Config
    """The validated :class:`~tufl.config.schema.Config` named by ``--config``/``--set``."""
    from tufl.config.schema import Config

    return load_config(Config, args.config, args.overrides)


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
