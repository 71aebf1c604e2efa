"""The experiment config: the sections of every layer assembled (:mod:`tufl.config.schema`),
loaded from YAML with ``_base_`` inheritance and ``--set`` overrides
(:mod:`tufl.runtime.typed_config`)."""

from tufl.config.schema import Config, experiment_config_class, experiment_from_dict, load_experiment
from tufl.runtime.errors import ConfigError
from tufl.runtime.typed_config import dump_config, load_config, to_plain

__all__ = ["Config", "ConfigError", "dump_config", "experiment_config_class", "experiment_from_dict",
           "load_config", "load_experiment", "to_plain"]
