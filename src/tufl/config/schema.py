"""The experiment config: every layer's sections, assembled into one validated dataclass.

Each section is defined beside the code it configures (``experiment``/``train`` with
the engine, ``model`` with the networks, ``data`` with the datasets, ``loss`` with the
losses, ``mix`` and ``mic`` with their objective terms, ``pseudo_labels`` with the
pseudo-label source, ``optim`` with the optimiser, ``eval`` with the inference
options); no lower package imports this module. The sections of the objective terms
come from the term registry (:func:`tufl.objective.registry.term_sections`), so a
term registered with a section of its own gets it here. This module adds the rules
that span sections. A loaded config is frozen: nothing changes it after loading.
``docs/config.md`` documents every key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tufl.data.class_set import ClassFileError, run_classes
from tufl.data.config import DataConfig, DatasetConfig
from tufl.evaluation.options import EvalConfig
from tufl.models.build import ModelConfig
from tufl.objective.pseudo_labels import PseudoLabelConfig
from tufl.objective.registry import Mode, term_sections
from tufl.runtime.errors import ConfigError
from tufl.runtime.typed_config import from_dict, origin_of, read_config_tree
from tufl.train.config import ExperimentConfig, TrainConfig
from tufl.train.optim import OptimConfig

__all__ = ["Config", "DataConfig", "DatasetConfig", "EvalConfig", "ExperimentConfig", "Mode", "ModelConfig",
           "OptimConfig", "PseudoLabelConfig", "TrainConfig", "experiment_config_class", "experiment_from_dict",
           "load_experiment"]

# The sections before and after those of the objective terms, in the order of config files.
LEADING_SECTIONS: tuple[tuple[str, type], ...] = (
    ("experiment", ExperimentConfig), ("model", ModelConfig), ("data", DataConfig))
TRAILING_SECTIONS: tuple[tuple[str, type], ...] = (
    ("pseudo_labels", PseudoLabelConfig), ("optim", OptimConfig), ("train", TrainConfig), ("eval", EvalConfig))


class ExperimentRules:
    """The rules between sections, checked once every section is valid on its own."""

    def problems(self) -> list[str]:
        cfg: Any = self
        mode = cfg.experiment.mode
        out = []
        if cfg.data.batch_size % cfg.train.accumulate:
            out.append(f"train.accumulate: data.batch_size={cfg.data.batch_size} is not divisible "
                       f"by train.accumulate={cfg.train.accumulate}")
        if mode == "stage2" and not cfg.model.pretrained:
            out.append("model.pretrained: stage2 starts from a stage-one checkpoint; set its path")
        if mode == "source_only" and cfg.loss.unsupervised != "none":
            out.append("loss.unsupervised: source_only mode trains no unsupervised loss; set it to none")
        if mode != "source_only" and cfg.loss.unsupervised == "none":
            out.append(f"loss.unsupervised: mode {mode} needs an unsupervised loss")
        if cfg.pseudo_labels.source in ("offline", "ema") and mode != "stage2":
            out.append(f"pseudo_labels.source: {cfg.pseudo_labels.source} pseudo-labels are only used by stage2")
        if cfg.mic.weight > 0 and mode == "source_only":
            out.append("mic.weight: MIC trains on target images; source_only mode has none (set it to 0)")
        return out


_classes: dict[tuple[tuple[str, type], ...], type] = {}


def experiment_config_class() -> type:
    """The dataclass of a whole experiment for the terms registered now (made once per set)."""
    sections = (*LEADING_SECTIONS, *term_sections().items(), *TRAILING_SECTIONS)
    names = [name for name, _ in sections]
    if len(set(names)) != len(names):
        raise TypeError(f"two config sections share a name: {names}")
    if sections not in _classes:
        fields = [(name, cls, dataclasses.field(default_factory=cls)) for name, cls in sections]
        _classes[sections] = dataclasses.make_dataclass(
            "Config", fields, bases=(ExperimentRules,), frozen=True,
            namespace={"__doc__": "A whole experiment.", "__module__": __name__})
    return _classes[sections]


Config = experiment_config_class()


def load_experiment(path: str | Path, overrides: Iterable[str] = ()) -> Any:
    """The validated, frozen experiment config of a YAML file (``_base_`` files merged,
    ``--set`` ``overrides`` applied last); a :class:`~tufl.runtime.errors.ConfigError` names
    every problem with its key and the file it came from. ``model.num_classes`` is derived
    from the class definition file when a data section names one (:func:`with_class_count`)."""
    tree, origins = read_config_tree(path, overrides)
    return experiment_from_dict(tree, origins, str(path))


def experiment_from_dict(tree: dict[str, Any], origins: dict[str, str] | None = None,
                         default_origin: str = "<config>") -> Any:
    """The validated experiment config of a plain dict (a checkpoint's stored config)."""
    origins = origins if origins is not None else {}
    return with_class_count(from_dict(experiment_config_class(), tree, origins, default_origin), origins,
                            default_origin)


DATA_SECTIONS = ("source", "target", "val")


def with_class_count(cfg: Any, origins: dict[str, str], default_origin: str) -> Any:
    """``cfg`` with ``model.num_classes`` set to the class count of the class definition files
    its data sections name. A count written in the config (``origins`` has the key) that
    disagrees is an error naming both; files that define different classes too."""
    sections = [(key, getattr(cfg.data, key)) for key in DATA_SECTIONS]
    named = [key for key, ds in sections if ds is not None and ds.classes]
    if not named:
        return cfg
    try:
        classes = run_classes(sections, cfg.model.num_classes)
    except ClassFileError as error:
        keys = ", ".join(f"data.{key}.classes" for key in named)
        raise ConfigError([f"{origin_of(origins, f'data.{named[0]}.classes', default_origin)}: {keys}: {error}"]) from None
    count = classes.num_classes
    if cfg.model.num_classes == count:
        return cfg
    if "model.num_classes" in origins:
        raise ConfigError([
            f"{origins['model.num_classes']}: model.num_classes: {cfg.model.num_classes}, but the class file "
            f"{classes.origin} (data.{named[0]}.classes) defines {count} classes {list(classes.names)}; leave "
            "model.num_classes out (it is derived from the class file) or make the two agree"])
    return replace(cfg, model=replace(cfg.model, num_classes=count))
