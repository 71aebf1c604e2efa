"""Command-line interface: ``tufl <command> ...`` (also ``python -m tufl``).

Every command is one module of this package, ``tufl/cli/<command>.py`` (hyphens
become underscores), with ``add_arguments(parser)`` and ``run(args) -> exit status``;
no command code lives elsewhere. This file dispatches, importing the command's
module lazily so ``tufl --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command name -> help text; the command's module is tufl.cli.<name with _ for ->.
COMMANDS: dict[str, str] = {
    "demo": "run the built-in synthetic->realistic benchmark end to end",
    "train": "train a model (source_only, stage1 or stage2) from a config",
    "ablate": "train a grid of config overrides over several seeds and tabulate mean, std and paired differences",
    "evaluate": "evaluate a checkpoint on a labelled split (mIoU)",
    "report": "write an HTML report of training runs (curves, per-class IoU, sample predictions)",
    "predict": "predict images, folders or globs to colour maps",
    "export": "export a checkpoint's inference network (ONNX)",
    "pseudo-label": "write pseudo-labels of a target split to disk",
    "check-data": "check a dataset's layout, pairing and label values",
    "prepare-data": "write the training datasets at their training size (faster loading)",
    "show-config": "print the fully resolved config of a YAML file",
    "benchmark": "measure loss, training, inference and data speed",
}


def command_module(name: str) -> str:
    """The module of command ``name``: ``tufl.cli.<name>`` with underscores for hyphens."""
    return f"tufl.cli.{name.replace('-', '_')}"


def version_line() -> str:
    """``tufl <version>``: what ``tufl --version`` prints."""
    from tufl import __version__  # the package itself: loaded before any of its modules

    return f"tufl {__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tufl",
        description="Threshold-adaptive unsupervised focal loss (TUFL) and cross-domain image "
        "mixing for domain adaptation of semantic segmentation.",
    )
    parser.add_argument("--version", action="store_true", help="print tufl's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] == "--version":
        print(version_line())
        return 0
    name = argv[0]
    if name not in COMMANDS:
        parser.error(f"unknown command {name!r}; choose from {', '.join(COMMANDS)}")
    help_text = COMMANDS[name]
    module = importlib.import_module(command_module(name))
    sub = argparse.ArgumentParser(prog=f"tufl {name}", description=help_text)
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
