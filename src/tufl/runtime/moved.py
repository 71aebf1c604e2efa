"""Old module paths of tufl, kept importable after the modules moved.

``import tufl.train.checkpoint`` (a path of tufl before its layered layout) gives the
module at its new path, :mod:`tufl.runtime.checkpoint_files`, with a ``FutureWarning``
naming that path, so scripts written against older versions keep working while they
are updated. :data:`MOVED` lists every moved module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType

# old module -> the module it is now
MOVED: dict[str, str] = {
    "tufl.atomic": "tufl.runtime.atomic",
    "tufl.errors": "tufl.runtime.errors",
    "tufl.problems": "tufl.runtime.checks",
    "tufl.config.loader": "tufl.runtime.typed_config",
    "tufl.config.command": "tufl.cli.show_config",
    "tufl.data.factory": "tufl.data.registry",
    "tufl.data.prepare_command": "tufl.cli.prepare_data",
    "tufl.losses.config": "tufl.losses.registry",
    "tufl.losses.validation": "tufl.losses.arguments",
    "tufl.mixing.draws": "tufl.runtime.draws",
    "tufl.mixing.weights": "tufl.mixing.pixel_weights",
    "tufl.train.checkpoint": "tufl.runtime.checkpoint_files",
    "tufl.train.command": "tufl.cli.train",
    "tufl.train.distributed": "tufl.runtime.distributed",
    "tufl.train.mic": "tufl.objective.mic",
    "tufl.train.objectives": "tufl.objective.objective",
    "tufl.train.preemption": "tufl.runtime.stop_signals",
    "tufl.train.pseudo_label_command": "tufl.cli.pseudo_label",
    "tufl.train.pseudo_labels": "tufl.objective.pseudo_labels",
    "tufl.train.run_log": "tufl.runtime.run_log",
    "tufl.train.teacher": "tufl.objective.teacher",
    "tufl.evaluation.command": "tufl.cli.evaluate",
    "tufl.evaluation.export_command": "tufl.cli.export",
    "tufl.evaluation.predict_command": "tufl.cli.predict",
    "tufl.bench.command": "tufl.cli.benchmark",
    "tufl.demo.command": "tufl.demo.pipeline",
    "tufl.demo.charts": "tufl.report.charts",
    "tufl.demo.report": "tufl.report.writer",
    "tufl.demo.report_figures": "tufl.report.figures",
    "tufl.demo.report_html": "tufl.report.page",
}


class _Alias(importlib.abc.Loader):
    """Loads an old path as the module at its new path."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        warnings.warn(f"{self.old} moved to {self.new}; import it from there", FutureWarning, stacklevel=2)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module is the one at the new path."""


class MovedModules(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED` (consulted after the regular finders)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        new = MOVED.get(name)
        return None if new is None else importlib.util.spec_from_loader(name, _Alias(name, new))


def install() -> None:
    """Make the old paths importable (once per interpreter)."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
