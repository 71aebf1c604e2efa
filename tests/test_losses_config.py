"""Loss configuration dataclasses and the factories."""

from __future__ import annotations

import dataclasses

import pytest

from tufl.losses import (
    TUFL,
    UNSUPERVISED_LOSS_CONFIGS,
    ConfEntropyConfig,
    ConfidenceEntropy,
    EntropyConfig,
    EntropyMinimization,
    FixedFocalConfig,
    FixedThresholdFocalLoss,
    MaxSquares,
    MaxSquaresConfig,
    NCEConfig,
    SupervisedCE,
    SupervisedConfig,
    TUFLConfig,
    build_supervised_loss,
    build_unsupervised_loss,
)

ALL_CONFIGS = [*UNSUPERVISED_LOSS_CONFIGS.values(), SupervisedConfig]


@pytest.mark.parametrize("config_cls", ALL_CONFIGS)
def test_defaults_are_valid(config_cls):
    assert config_cls().problems() == []


@pytest.mark.parametrize(
    "cfg, field",
    [
        (TUFLConfig(gamma=-1.0), "gamma"),
        (TUFLConfig(focal_type=3), "focal_type"),  # type: ignore[arg-type]
        (TUFLConfig(theta0=1.2), "theta0"),
        (TUFLConfig(a=-0.1), "a"),
        (TUFLConfig(b=1.5), "b"),
        (TUFLConfig(d=-2.0), "d"),
        (TUFLConfig(a_decay=-1.0), "a_decay"),
        (TUFLConfig(ohem_ratio=0.0), "ohem_ratio"),
        (TUFLConfig(class_weights=(1.0, float("nan"))), "class_weights"),
        (NCEConfig(b=-1.0), "b"),
        (FixedFocalConfig(threshold=2.0), "threshold"),
        (FixedFocalConfig(ohem_ratio=2.0), "ohem_ratio"),
        (EntropyConfig(view="middle"), "view"),  # type: ignore[arg-type]
        (EntropyConfig(threshold=-0.5), "threshold"),
        (MaxSquaresConfig(view="x"), "view"),  # type: ignore[arg-type]
        (ConfEntropyConfig(view="x"), "view"),  # type: ignore[arg-type]
        (SupervisedConfig(ohem_ratio=-1.0), "ohem_ratio"),
        (SupervisedConfig(class_weights=()), "class_weights"),
    ],
)
def test_problems_name_the_field(cfg, field):
    problems = cfg.problems()
    assert len(problems) == 1 and problems[0].startswith(f"{field}: ")


def test_every_field_has_a_default():
    for config_cls in ALL_CONFIGS:
        for field in dataclasses.fields(config_cls):
            assert field.default is not dataclasses.MISSING, f"{config_cls.__name__}.{field.name}"


def test_tufl_config_reaches_the_module():
    cfg = TUFLConfig(gamma=1.0, focal_type=2, theta0=0.7, a=0.5, b=0.3, d=4.0, a_decay=0.01, ohem_ratio=0.5,
                     class_weights=(1.0, 2.0, 3.0), detach_focal=True)
    loss = build_unsupervised_loss("tufl", 3, cfg)
    assert isinstance(loss, TUFL)
    assert (loss.gamma, loss.focal_type, loss.a, loss.b, loss.d, loss.a_decay, loss.ohem_ratio, loss.detach_focal) == (
        1.0, 2, 0.5, 0.3, 4.0, 0.01, 0.5, True)
    assert loss.thresholds.tolist() == pytest.approx([0.7] * 3)
    assert loss.class_weights.tolist() == [1.0, 2.0, 3.0]


def test_every_name_builds_its_loss():
    expected = {
        "tufl": TUFL,
        "nce": TUFL,
        "fixed_focal": FixedThresholdFocalLoss,
        "entropy": EntropyMinimization,
        "max_squares": MaxSquares,
        "conf_entropy": ConfidenceEntropy,
    }
    assert set(expected) == set(UNSUPERVISED_LOSS_CONFIGS)
    for name, module_cls in expected.items():
        assert type(build_unsupervised_loss(name, 5)) is module_cls
    assert build_unsupervised_loss("nce", 5).gamma == 0.0
    assert build_unsupervised_loss("fixed_focal", 5, FixedFocalConfig(threshold=0.6)).threshold == 0.6
    assert build_unsupervised_loss("entropy", 5, EntropyConfig(view="strong", threshold=0.2)).view == "strong"


def test_factory_rejects_mismatches():
    with pytest.raises(ValueError, match="unknown unsupervised loss"):
        build_unsupervised_loss("focal", 19)
    with pytest.raises(TypeError, match="NCEConfig"):
        build_unsupervised_loss("nce", 19, TUFLConfig())  # gamma would be ignored
    with pytest.raises(ValueError, match="theta0"):
        build_unsupervised_loss("tufl", 19, TUFLConfig(theta0=5.0))
    with pytest.raises(ValueError, match="class_weights"):
        build_unsupervised_loss("tufl", 19, TUFLConfig(class_weights=(1.0, 2.0)))


def test_supervised_factory():
    loss = build_supervised_loss(3, SupervisedConfig(class_weights=(1.0, 2.0, 3.0), ohem_ratio=0.7))
    assert isinstance(loss, SupervisedCE) and loss.ohem_ratio == 0.7
    assert loss.class_weights.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="class_weights"):
        build_supervised_loss(4, SupervisedConfig(class_weights=(1.0,)))
    with pytest.raises(TypeError):
        build_supervised_loss(4, EntropyConfig())  # type: ignore[arg-type]


def test_configs_round_trip_through_the_config_loader():
    from tufl.config.loader import ConfigError, from_dict, to_plain

    samples = [
        TUFLConfig(gamma=1.0, focal_type=2, class_weights=(1.0, 2.0), detach_focal=True),
        NCEConfig(theta0=0.5, a_decay=0.1),
        FixedFocalConfig(threshold=0.9, ohem_ratio=0.5),
        EntropyConfig(view="strong", threshold=0.3),
        MaxSquaresConfig(view="strong"),
        ConfEntropyConfig(),
        SupervisedConfig(class_weights=(0.5, 1.0), ohem_ratio=0.7),
    ]
    for cfg in samples:
        assert from_dict(type(cfg), to_plain(cfg)) == cfg
    with pytest.raises(ConfigError, match="b: must be in"):
        from_dict(TUFLConfig, {"b": 3})
