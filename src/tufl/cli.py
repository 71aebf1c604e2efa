"""Command-line interface: ``tufl <command> ...`` (also ``python -m tufl``).

Each command lives in its own module; this file only parses arguments and
dispatches, importing the command's module lazily so ``tufl --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command name -> ("module[:add_fn,run_fn]", help text). By default a command module
# provides add_arguments(parser) and run(args) -> exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tufl.demo.command", "run the built-in synthetic->realistic benchmark end to end"),
    "train": ("tufl.train.command", "train a model (source_only, stage1 or stage2) from a config"),
    "evaluate": ("tufl.evaluation.command", "evaluate a checkpoint on a labelled split (mIoU)"),
    "predict": ("tufl.evaluation.predict_command", "predict images, folders or globs to colour maps"),
    "export": ("tufl.evaluation.export_command", "export a checkpoint's inference network (ONNX)"),
    "pseudo-label": ("tufl.train.pseudo_label_command", "write pseudo-labels of a target split to disk"),
    "check-data": ("tufl.data.check:add_check_data_arguments,run_check_data", "check a dataset's layout, pairing and label values"),
    "prepare-data": ("tufl.data.prepare_command", "write the training datasets at their training size (faster loading)"),
    "show-config": ("tufl.config.command", "print the fully resolved config of a YAML file"),
    "benchmark": ("tufl.bench.command", "measure loss, training, inference and data speed"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tufl",
        description="Threshold-adaptive unsupervised focal loss (TUFL) and cross-domain image "
        "mixing for domain adaptation of semantic segmentation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        parser.error(f"unknown command {name!r}; choose from {', '.join(COMMANDS)}")
    target, help_text = COMMANDS[name]
    module_name, _, functions = target.partition(":")
    add_name, run_name = functions.split(",") if functions else ("add_arguments", "run")
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"tufl {name}", description=help_text)
    getattr(module, add_name)(sub)
    args = sub.parse_args(argv[1:])
    return int(getattr(module, run_name)(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
