"""Typed, validated YAML configuration."""

from tufl.config.loader import ConfigError, dump_config, load_config, to_plain

__all__ = ["ConfigError", "dump_config", "load_config", "to_plain"]
