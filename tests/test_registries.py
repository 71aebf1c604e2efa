"""Plug-in points: a dataset layout, a network and an objective term registered from this
module are usable from a config file with no other edit (docs/extending.md)."""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from torch import Tensor, nn

import runs
from tufl.cli.check_data import add_arguments as check_data_arguments
from tufl.cli.check_data import run as check_data
from tufl.config import experiment_config_class, load_experiment
from tufl.data.cityscapes import CityscapesIdDataset
from tufl.data.registry import DATASETS, open_dataset
from tufl.models.network import SegNetwork
from tufl.models.registry import NETWORKS
from tufl.objective import TERMS, BuildContext, Outputs, Step, Term, TermLoss, TermSpec
from tufl.runtime.errors import ConfigError
from tufl.runtime.registry import Registry
from tufl.runtime.run_log import read_metrics
from tufl.train.engine import train


class PicturesAndMasks(CityscapesIdDataset):
    """A layout of our own: ``pictures/N_pic.png`` with ``masks/N_mask.png`` (Cityscapes ids)."""

    name = "pictures_and_masks"
    root_title = "pictures-and-masks"
    image_folder, label_folder = "pictures", "masks"
    image_suffix, label_suffix = "_pic", "_mask.png"


class TwoConvNet(SegNetwork):
    """Two convolutions: an 'encoder' at half resolution and a classifier."""

    arch = "two_conv"

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.classifier = nn.Conv2d(8, num_classes, 1)

    @classmethod
    def from_config(cls, cfg: Any, training: bool) -> TwoConvNet:
        return cls(cfg.num_classes)

    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.classifier(self.backbone(x))]


@dataclass(frozen=True)
class LogitPenaltyConfig:
    """A toy term: weight x the mean squared logit of the weak target view."""

    # Weight of the term (0 = off).
    weight: float = 0.0

    def problems(self) -> list[str]:
        return ["weight: must be >= 0"] if self.weight < 0 else []


class LogitPenalty(Term):
    """``logit_penalty.weight`` x mean(weak logits ** 2), in stage one."""

    spec = TermSpec("logit_penalty", ("stage1",), "logit_penalty", LogitPenaltyConfig, reads=("weak",))

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return cfg.logit_penalty.weight > 0

    @classmethod
    def build(cls, ctx: BuildContext) -> LogitPenalty:
        return cls(ctx.cfg.logit_penalty.weight)

    def loss(self, step: Step, out: Outputs) -> TermLoss:
        value = out.main("weak").pow(2).mean()
        return TermLoss(self.weight * value, {"loss_logit_penalty": value.detach()})


@pytest.fixture
def registered():
    """The three plug-ins, registered for one test."""
    DATASETS.register(PicturesAndMasks.name, PicturesAndMasks)
    NETWORKS.register(TwoConvNet.arch, TwoConvNet)
    TERMS.register(LogitPenalty.spec.name, LogitPenalty)
    try:
        yield
    finally:
        DATASETS.unregister(PicturesAndMasks.name)
        NETWORKS.unregister(TwoConvNet.arch)
        TERMS.unregister(LogitPenalty.spec.name)


def _pictures_and_masks(scene_info, root: Path) -> Path:
    """The generated GTA5-layout source scenes, copied into our own layout."""
    for folder in ("pictures", "masks"):
        (root / folder).mkdir(parents=True)
    for image in sorted((scene_info.source_root / "images").glob("*.png")):
        shutil.copy(image, root / "pictures" / f"{image.stem}_pic.png")
        shutil.copy(scene_info.source_root / "labels" / image.name, root / "masks" / f"{image.stem}_mask.png")
    return root


def test_registered_plug_ins_train_from_a_config_file(registered, scene_info, tmp_path):
    root = _pictures_and_masks(scene_info, tmp_path / "own_layout")
    tree = runs.run_tree(scene_info, tmp_path / "run", "stage1", iters=2,
                         model={"arch": "two_conv"}, data={"source": {"name": "pictures_and_masks", "root": str(root)},
                                                           "val": None},
                         logit_penalty={"weight": 0.25})
    cfg = load_experiment(runs.write_yaml(tree, tmp_path / "run.yaml"))
    assert cfg.logit_penalty == LogitPenaltyConfig(0.25)
    dataset = open_dataset(cfg.data.source, 19, False)
    assert isinstance(dataset, PicturesAndMasks) and len(dataset) == 8
    assert dataset.label_path(0) == str(root / "masks" / "00001_mask.png")  # the layout's label rule
    run_dir = train(cfg)
    records = read_metrics(run_dir, "train")
    assert len(records) == 2
    for r in records:  # the logged total is the sum of the three terms, with their weights
        expected = r["loss_sup"] + cfg.loss.lambda_u * r["loss_unsup"] + 0.25 * r["loss_logit_penalty"]
        assert r["loss"] == pytest.approx(expected, rel=1e-5) and r["loss_logit_penalty"] > 0
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["architecture"] == "two_conv" and "pictures_and_masks" in info["source"]


def test_registered_names_are_the_config_choices(registered, tmp_path, capsys):
    assert "logit_penalty" in {f for f in experiment_config_class().__dataclass_fields__}
    parser = argparse.ArgumentParser()
    check_data_arguments(parser)
    assert check_data(parser.parse_args(["--dataset", "pictures_and_masks", "--root", str(tmp_path),
                                         "--workers", "0"])) == 1
    assert "not a pictures-and-masks root" in capsys.readouterr().out


def test_unregistered_names_are_refused_with_the_known_ones(tmp_path, scene_info):
    tree = runs.run_tree(scene_info, tmp_path / "run", "stage1", model={"arch": "two_conv"},
                         data={"source": {"name": "pictures_and_masks"}}, logit_penalty={"weight": 0.25})
    with pytest.raises(ConfigError) as error:
        load_experiment(runs.write_yaml(tree, tmp_path / "run.yaml"))
    text = str(error.value)
    assert "model.arch: unknown network 'two_conv'; expected one of deeplabv2, bisenet, daformer" in text
    assert "data.source.name: unknown dataset 'pictures_and_masks'; expected one of gta5," in text
    assert "logit_penalty: unknown key" in text
    assert "logit_penalty" not in experiment_config_class().__dataclass_fields__


def test_registry_refuses_a_second_entry_under_one_name():
    registry: Registry[type] = Registry("widget")
    registry.register("a", int)
    registry.register("a", int)  # the same entry again: no change
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        registry.register("a", float)
    with pytest.raises(ValueError, match="unknown widget 'b'; expected one of a"):
        registry.get("b")
    registry.unregister("a")
    assert registry.names() == ()
