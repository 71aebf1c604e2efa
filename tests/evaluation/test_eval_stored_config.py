"""Evaluation reads what it needs of a checkpoint's stored config, also from older versions."""

from __future__ import annotations

import argparse

import pytest

from tufl.runtime.typed_config import ConfigError, from_dict, to_plain
from tufl.config.schema import Config
from tufl.cli.evaluate import run_config


def _old_stored_config() -> dict:
    """A resolved config as code before the redesign stored it: removed loss options,
    the old photometric noise form, boolean freeze_bn."""
    tree = to_plain(Config())
    tree["experiment"]["mode"] = "source_only"
    tree["loss"]["unsupervised"] = "none"
    tree["loss"]["tufl"].update(compile=False, cuda_graphs=False)
    tree["data"]["target_views"]["photometric"]["noise_std"] = 8.0
    tree["model"]["freeze_bn"] = True
    tree["data"]["val"]["root"] = "somewhere/cityscapes"
    return tree


def test_old_stored_configs_still_give_the_evaluation_settings():
    stored = _old_stored_config()
    with pytest.raises(ConfigError, match="cuda_graphs: removed"):
        from_dict(Config, stored)  # the whole config is no longer valid ...
    args = argparse.Namespace(config=None, overrides=["eval.flip=true"], checkpoint="old.pt")
    cfg = run_config(args, {"config": stored})  # ... but what evaluation reads is
    assert cfg.data.val.root == "somewhere/cityscapes" and cfg.eval.flip is True
    assert cfg.model.freeze_bn == "backbone" and cfg.experiment.mode == "source_only"


def test_stored_config_problems_in_the_evaluation_part_are_still_reported():
    stored = _old_stored_config()
    stored["eval"]["scales"] = []
    args = argparse.Namespace(config=None, overrides=[], checkpoint="old.pt")
    with pytest.raises(ConfigError, match=r"old.pt \(stored config\): eval.scales"):
        run_config(args, {"config": stored})
