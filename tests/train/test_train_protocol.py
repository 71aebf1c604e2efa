"""The authors' training protocol in the shipped configs: optimiser, BatchNorm mode, mixed-loss heads."""

from __future__ import annotations

import dataclasses

from pathlib import Path

import pytest
import torch
from torch import nn

from tufl.runtime.typed_config import load_config
from tufl.config.schema import Config
from tufl.models.build import ModelConfig, build_model
from tufl.models.resnet import FrozenBatchNorm2d
from tufl.train.optim import OptimConfig, build_optimizer, set_learning_rate

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CROSSCITY = [CONFIGS / "cityscapes_crosscity" / f"bisenet_stage{k}.yaml" for k in (1, 2)]
# The authors' BiSeNet adaptation protocol; the own-data CPU example trains from a random start, as the
# demo does, so its statistics are not settled enough to freeze (configs/_base_/own_data_cpu.yaml).
BISENET_ADAPTATION = sorted(p for p in CONFIGS.glob("*/bisenet_stage*.yaml") if p.parent.name != "own_data")


def _resolved(path: Path) -> Config:
    cfg = load_config(Config, path)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=None))  # the configs name
    # checkpoints of earlier stages


@pytest.mark.parametrize("path", CROSSCITY, ids=lambda p: p.name)
def test_crosscity_optimiser_is_the_authors(path):
    cfg = _resolved(path)
    model = build_model(cfg.model).model
    optimizer = build_optimizer(model, cfg.optim)
    # Their lr_start 0.5e-5 times the 10 their wrapper applies to every group; poly 0.9 over
    # 2,000 iterations from step 0, no warm-up; SGD momentum 0.9, weight decay 5e-4 except on
    # biases and BatchNorm parameters; batch 1 + 1 per GPU on 2 GPUs.
    assert cfg.train.iters == 2000 and cfg.data.batch_size == 2
    for iteration, factor in ((0, 1.0), (1, (1 - 1 / 2000) ** 0.9), (1000, 0.5 ** 0.9), (1999, (1 / 2000) ** 0.9)):
        set_learning_rate(optimizer, iteration, cfg.train.iters, cfg.optim)
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(5e-5 * factor, rel=1e-12), (iteration, group["name"])
    grouped = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    for group in optimizer.param_groups:
        assert group["momentum"] == 0.9 and not group["nesterov"]
        one_dimensional = all(p.dim() == 1 for p in group["params"])
        if group["name"].endswith("_no_decay"):
            assert group["weight_decay"] == 0.0 and one_dimensional
        else:
            assert group["weight_decay"] == 5e-4 and all(p.dim() > 1 for p in group["params"])
    bn_weights = {id(m.weight) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)}
    no_decay = {id(p) for g in optimizer.param_groups if g["name"].endswith("_no_decay") for p in g["params"]}
    assert bn_weights and bn_weights <= no_decay


def test_default_optimiser_keeps_two_groups_with_decay():
    model = build_model(ModelConfig(arch="bisenet", freeze_bn="none")).model
    optimizer = build_optimizer(model, OptimConfig(lr=0.01, head_lr_mult=10.0))
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [
        ("backbone", 0.01, 5e-4), ("head", 0.1, 5e-4)]


@pytest.mark.parametrize("path", BISENET_ADAPTATION, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_bisenet_adaptation_uses_running_statistics_everywhere(path):
    cfg = _resolved(path)
    assert (cfg.model.freeze_bn, cfg.model.frozen_bn_affine_trainable) == ("all", True)
    torch.manual_seed(0)
    model = build_model(cfg.model).model.train()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(frozen) > 20  # backbone, attention refinement, feature fusion and heads
    for m in frozen:  # non-trivial statistics, so that a batch-statistics forward would differ
        m.running_mean.normal_()
        m.running_var.uniform_(0.5, 2.0)
    before = [m.running_mean.clone() for m in frozen]
    out = model(torch.randint(0, 256, (2, 3, 64, 128), dtype=torch.uint8))
    assert len(out.heads()) == 3  # the auxiliary heads still train
    sum(head.square().mean() for head in out.heads()).backward()
    for m, mean in zip(frozen, before):
        assert torch.equal(m.running_mean, mean)
        assert m.weight.grad is not None and m.bias.grad is not None and m.weight.grad.abs().sum() > 0
    # running statistics, not batch statistics: one image alone gives the same output as in a batch
    x = torch.randint(0, 256, (2, 3, 64, 128), dtype=torch.uint8)
    with torch.no_grad():
        both, first = model(x).main, model(x[:1]).main
    torch.testing.assert_close(both[:1], first, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode,expected", [(False, "none"), (True, "backbone"), ("all", "all")])
def test_freeze_bn_accepts_the_old_boolean_form(mode, expected):
    assert ModelConfig(freeze_bn=mode).freeze_bn == expected


def test_freeze_backbone_keeps_head_batchnorm_training():
    model = build_model(ModelConfig(arch="bisenet", freeze_bn="backbone")).model
    backbone = model.net.context_path.backbone
    assert all(not isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    frozen = [m for m in backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and all(not isinstance(m.weight, nn.Parameter) for m in frozen)  # affine fixed by default


def _stage2(mix_all_heads: bool):
    from tufl.losses import build_supervised_loss, build_unsupervised_loss
    from tufl.mixing import CrossDomainMixer, MixConfig
    from tufl.objective import Objective
    from tufl.objective.consistency import ConsistencyTerm
    from tufl.objective.mixing import MixingTerm
    from tufl.objective.pseudo_labels import PseudoLabelSource
    from tufl.objective.supervised import SupervisedTerm

    mixer = CrossDomainMixer(MixConfig(p_longtail=0.0), 19)
    unsup = [build_unsupervised_loss("tufl", 19) for _ in range(3)]
    terms = [SupervisedTerm(build_supervised_loss(19)), ConsistencyTerm(unsup, 0.08),
             MixingTerm(mixer, 0.5, all_heads=mix_all_heads)]
    return Objective(terms, PseudoLabelSource())  # offline pseudo-labels: in the target batch


@pytest.mark.parametrize("mix_all_heads", [False, True])
def test_mixed_loss_heads(mix_all_heads):
    from tufl.models.segmentor import SegOutput

    g = torch.Generator().manual_seed(0)
    b, h, w = 2, 8, 12
    source = {"image": torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8),
              "label": torch.randint(0, 19, (b, h, w), generator=g)}
    target = {"weak": torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8),
              "strong": torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8),
              "theta": torch.eye(2, 3).expand(b, 2, 3),
              "pseudo_label": torch.randint(0, 19, (b, h, w), generator=g), "confidence": torch.rand(b, h, w, generator=g)}
    heads = [torch.randn(4 * b, 19, h, w, generator=g) for _ in range(3)]  # source, weak, strong, mixed

    def forward(images):
        return SegOutput(heads[0], (heads[1], heads[2]))

    objective = _stage2(mix_all_heads)
    out = objective(forward, source, target, torch.Generator().manual_seed(1))
    view = out.mix.target
    per_head = [view.loss(head[3 * b:]) for head in heads]
    want = torch.stack(per_head).mean() if mix_all_heads else per_head[0]
    torch.testing.assert_close(out.logs["loss_mix"], want)
    assert not torch.allclose(per_head[0], torch.stack(per_head).mean())  # the choice matters here
