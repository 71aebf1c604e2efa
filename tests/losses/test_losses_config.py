"""Loss configuration dataclasses and the factories."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

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
    NeutralCrossEntropy,
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
        (TUFLConfig(loss_floor=-1e-8), "loss_floor"),
        (NCEConfig(b=-1.0), "b"),
        (NCEConfig(threshold=1.5), "threshold"),
        (NCEConfig(loss_floor=float("inf")), "loss_floor"),
        (FixedFocalConfig(loss_floor=float("nan")), "loss_floor"),
        (FixedFocalConfig(threshold=2.0), "threshold"),
        (FixedFocalConfig(ohem_ratio=2.0), "ohem_ratio"),
        (EntropyConfig(view="middle"), "view"),  # type: ignore[arg-type]
        (EntropyConfig(threshold=-0.5), "threshold"),
        (EntropyConfig(class_weights=(1.0, -1.0)), "class_weights"),
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
                     class_weights=(1.0, 2.0, 3.0), detach_focal=True, loss_floor=0.5)
    loss = build_unsupervised_loss("tufl", 3, cfg)
    assert isinstance(loss, TUFL)
    assert (loss.gamma, loss.focal_type, loss.a, loss.b, loss.d, loss.a_decay, loss.ohem_ratio, loss.detach_focal,
            loss.loss_floor) == (1.0, 2, 0.5, 0.3, 4.0, 0.01, 0.5, True, 0.5)
    assert loss.thresholds.tolist() == pytest.approx([0.7] * 3)
    assert loss.class_weights.tolist() == [1.0, 2.0, 3.0]


def test_every_name_builds_its_loss():
    expected = {
        "tufl": TUFL,
        "nce": FixedThresholdFocalLoss,
        "fixed_focal": FixedThresholdFocalLoss,
        "entropy": EntropyMinimization,
        "max_squares": MaxSquares,
        "conf_entropy": ConfidenceEntropy,
    }
    assert set(expected) == set(UNSUPERVISED_LOSS_CONFIGS)
    for name, module_cls in expected.items():
        assert type(build_unsupervised_loss(name, 5)) is module_cls
    assert build_unsupervised_loss("nce", 5).gamma == 0.0
    fixed = build_unsupervised_loss("fixed_focal", 5, FixedFocalConfig(
        threshold=0.6, gamma=1.0, focal_type=2, detach_focal=True, ohem_ratio=0.5, loss_floor=0.0))
    assert (fixed.threshold, fixed.gamma, fixed.focal_type, fixed.detach_focal, fixed.ohem_ratio, fixed.loss_floor) == (
        0.6, 1.0, 2, True, 0.5, 0.0)
    default_fixed = build_unsupervised_loss("fixed_focal", 5)
    # the authors' UnsupFocalLoss: threshold 0.8, focal type 2, the 1e-8 clamp, no OHEM
    assert (default_fixed.threshold, default_fixed.focal_type, default_fixed.loss_floor,
            default_fixed.ohem_ratio) == (0.8, 2, 1e-8, 1.0)
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
    from tufl.runtime.typed_config import ConfigError, from_dict, to_plain

    samples = [
        TUFLConfig(gamma=1.0, focal_type=2, class_weights=(1.0, 2.0), detach_focal=True),
        NCEConfig(theta0=0.5, a_decay=0.1),
        NCEConfig(threshold=None, ohem_ratio=1.0, loss_floor=0.0, backend="torch"),
        FixedFocalConfig(threshold=0.9, ohem_ratio=0.5),
        EntropyConfig(view="strong", threshold=0.3),
        EntropyConfig(normalize=True, class_weights=(1.0, 0.5)),
        MaxSquaresConfig(view="strong"),
        ConfEntropyConfig(),
        SupervisedConfig(class_weights=(0.5, 1.0), ohem_ratio=0.7),
    ]
    for cfg in samples:
        assert from_dict(type(cfg), to_plain(cfg)) == cfg
    with pytest.raises(ConfigError, match="b: must be in"):
        from_dict(TUFLConfig, {"b": 3})


# ----------------------------------------------------------------- one constructor path: the config

# Each loss built from its config, with one field to override.
CONFIGURED_LOSSES = {
    TUFL: {"theta0": 0.7},
    FixedThresholdFocalLoss: {"threshold": 0.6},
    EntropyMinimization: {"normalize": True},
    MaxSquares: {"view": "strong"},
    ConfidenceEntropy: {"view": "strong"},
    SupervisedCE: {"ohem_ratio": 0.5},
}


@pytest.mark.parametrize("loss_cls", CONFIGURED_LOSSES)
def test_a_bare_loss_has_its_config_defaults(loss_cls):
    loss = loss_cls(5)
    assert loss.config == loss_cls.Config()
    for field in dataclasses.fields(loss_cls.Config):
        if field.name != "class_weights" and hasattr(loss, field.name):
            assert getattr(loss, field.name) == field.default, field.name


def test_a_bare_tufl_gets_the_config_floor():
    # The constructor restates no default: a bare TUFL clamps at the config's 1e-8 (it once used 0).
    assert TUFL(19).loss_floor == TUFLConfig().loss_floor == 1e-8
    assert FixedThresholdFocalLoss(19).loss_floor == FixedFocalConfig().loss_floor


@pytest.mark.parametrize("loss_cls", CONFIGURED_LOSSES)
def test_overrides_and_from_config_are_one_path(loss_cls):
    cfg = loss_cls.Config()
    overrides = CONFIGURED_LOSSES[loss_cls]
    built = loss_cls(5, cfg, **overrides)
    assert built.config == dataclasses.replace(cfg, **overrides) != cfg
    for name, value in overrides.items():
        assert getattr(built, name, value) == value
    assert loss_cls.from_config(5, cfg).config == loss_cls(5, cfg).config == cfg
    with pytest.raises(TypeError, match="colour"):
        loss_cls(5, colour=1)
    with pytest.raises(TypeError, match=loss_cls.Config.__name__):
        loss_cls(5, object())


def test_keyword_calls_keep_working():
    loss = TUFL(19, gamma=1.0, theta0=0.7)
    assert loss.config == TUFLConfig(gamma=1.0, theta0=0.7) and loss.gamma == 1.0
    assert loss.thresholds.tolist() == pytest.approx([0.7] * 19)
    weighted = TUFL(3, TUFLConfig(a=0.5), class_weights=torch.tensor([1.0, 2.0, 3.0]))
    assert weighted.config == TUFLConfig(a=0.5, class_weights=(1.0, 2.0, 3.0)) and weighted.a == 0.5
    assert weighted.class_weights.tolist() == [1.0, 2.0, 3.0]


def test_configs_are_frozen():
    for config_cls in ALL_CONFIGS:
        with pytest.raises(dataclasses.FrozenInstanceError):
            config_cls().x = 1


def test_constructor_errors_list_every_problem_after_the_class_name():
    with pytest.raises(ValueError, match=r"^TUFL: theta0: .*; gamma: must be"):
        TUFL(19, theta0=2.0, gamma=-1.0)
    with pytest.raises(ValueError, match=r"^FixedThresholdFocalLoss: num_classes: must be >= 1"):
        FixedThresholdFocalLoss(0)
    with pytest.raises(ValueError, match=r"^EntropyMinimization: class_weights: expected 4 weights"):
        EntropyMinimization(4, class_weights=[1.0])
    with pytest.raises(ValueError, match=r"^NeutralCrossEntropy: threshold: must be in"):
        NeutralCrossEntropy.from_config(5, NCEConfig(threshold=2.0))
    with pytest.raises(ValueError, match=r"^SupervisedCE: ohem_ratio: must be in"):
        SupervisedCE(5, ohem_ratio=2.0)


# ----------------------------------------------------------------- defaults of the authors' release


def test_tufl_defaults_are_unchanged_but_for_the_floor():
    loss = build_unsupervised_loss("tufl", 19)
    assert isinstance(loss, TUFL) and loss.loss_floor == 1e-8
    assert (loss.gamma, loss.focal_type, loss.a, loss.b, loss.d, loss.a_decay, loss.ohem_ratio) == (
        2.0, 1, 0.9, 0.8, 8.0, 0.0, 1.0)
    assert loss.thresholds.tolist() == pytest.approx([0.8] * 19) and loss.class_weights is None
    assert not isinstance(TUFLConfig(), NCEConfig) and not isinstance(NCEConfig(), TUFLConfig)


def _softmax(z):
    exps = [math.exp(v - max(z)) for v in z]
    return [e / sum(exps) for e in exps]


def _single_view(pixels_):
    """``[1, C, 1, N]`` float64 logits of a list of per-pixel logit lists."""
    return torch.tensor(pixels_, dtype=torch.float64).T.reshape(1, len(pixels_[0]), 1, -1).contiguous()


def _top_mean(values, ratio):
    kept = sorted(values, reverse=True)[: math.ceil(ratio * len(values))]
    return sum(kept) / len(kept)


def _peaked(k: int, logit: float) -> list[float]:
    """Logits of three classes: ``logit`` for class ``k``, 0 for the others."""
    return [logit if c == k else 0.0 for c in range(3)]


# weak, strong logits, valid. Seven pixels confident on one class in both views (class, weak and
# strong logit of it; cross-entropy ~1e-12, below the floor), two ordinary passing pixels, failing
# ones (max p <= 0.8) and an invalid pixel with a large loss.
CONFIDENT = [(0, 30.0, 30.0), (1, 31.0, 30.0), (2, 32.0, 33.0), (0, 30.0, 29.0), (1, 35.0, 34.0), (2, 30.0, 31.0),
             (0, 33.0, 30.0)]
NCE_PIXELS = [(_peaked(k, weak), _peaked(k, strong), True) for k, weak, strong in CONFIDENT] + [
    ([3.0, 0.0, 0.0], [0.0, 1.0, 0.0], True),
    ([0.0, 0.0, 2.5], [1.0, 0.0, 1.0], True),
    ([1.0, 0.0, 0.0], [0.0, 3.0, 0.0], True),
    ([0.0, 0.5, 0.0], [2.0, 0.0, 0.0], True),
    ([0.2, 0.1, 0.0], [0.0, 0.0, 2.0], True),
    ([5.0, 0.0, 0.0], [0.0, 5.0, 0.0], False),
]


def test_nce_default_is_the_authors_fixed_threshold_cross_entropy():
    loss_fn = build_unsupervised_loss("nce", 3)
    assert isinstance(loss_fn, FixedThresholdFocalLoss)
    assert (loss_fn.threshold, loss_fn.ohem_ratio, loss_fn.gamma, loss_fn.loss_floor) == (0.8, 0.25, 0.0, 1e-8)
    weak, strong = (_single_view([p[i] for p in NCE_PIXELS]) for i in (0, 1))
    valid = torch.tensor([p[2] for p in NCE_PIXELS]).view(1, 1, -1)
    counted = []
    for w, s, ok in NCE_PIXELS:
        p, q = _softmax(w), _softmax(s)
        if ok and max(p) > 0.8:
            counted.append(max(-sum(pc * math.log(qc) for pc, qc in zip(p, q)), 1e-8))
    assert len(counted) == 9 and sum(v == 1e-8 for v in counted) == 7  # keeps ceil(9 / 4) = 3: one at the floor
    assert loss_fn(weak, strong, valid).item() == pytest.approx(_top_mean(counted, 0.25), rel=1e-12)
    assert loss_fn.last_pass_fraction.item() == pytest.approx(9 / 12)


def test_nce_without_threshold_is_the_adaptive_tufl_with_gamma_zero():
    cfg = NCEConfig(threshold=None, theta0=0.6, a=0.7, ohem_ratio=1.0, loss_floor=0.0, class_weights=(1.0, 2.0, 3.0))
    loss_fn = build_unsupervised_loss("nce", 3, cfg)
    assert isinstance(loss_fn, TUFL) and loss_fn.gamma == 0.0
    assert (loss_fn.a, loss_fn.ohem_ratio, loss_fn.loss_floor) == (0.7, 1.0, 0.0)
    assert loss_fn.thresholds.tolist() == pytest.approx([0.6] * 3) and loss_fn.class_weights.tolist() == [1, 2, 3]


def _entropy_example():
    g = torch.Generator().manual_seed(7)
    return 3.0 * torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64)


def _reference_entropy(logits, normalize, threshold=0.8, ratio=0.25):
    counted = []
    for b in range(logits.shape[0]):
        for h in range(logits.shape[2]):
            for w in range(logits.shape[3]):
                p = _softmax(logits[b, :, h, w].tolist())
                if max(p) > threshold:
                    entropy = -sum(pc * math.log(pc) for pc in p)
                    counted.append(entropy / math.log(len(p)) if normalize else entropy)
    assert len(counted) >= 8
    return _top_mean(counted, ratio)


def test_entropy_default_is_the_authors_unnormalised_thresholded_form():
    loss_fn = build_unsupervised_loss("entropy", 4)
    assert (loss_fn.threshold, loss_fn.ohem_ratio, loss_fn.normalize, loss_fn.class_weights) == (0.8, 0.25, False, None)
    z = _entropy_example()
    expected = _reference_entropy(z, normalize=False)
    assert loss_fn(z, z).item() == pytest.approx(expected, rel=1e-12)
    normalised = build_unsupervised_loss("entropy", 4, EntropyConfig(normalize=True))(z, z)
    assert normalised.item() == pytest.approx(expected / math.log(4), rel=1e-12)
    previous = EntropyConfig(normalize=True, threshold=0.0, ohem_ratio=1.0)  # ADVENT's form, the old default
    advent = build_unsupervised_loss("entropy", 4, previous)(z, z)
    assert advent.item() == pytest.approx(_reference_entropy(z, True, threshold=0.0, ratio=1.0), rel=1e-12)
    weighted = build_unsupervised_loss("entropy", 4, EntropyConfig(class_weights=(1.0, 2.0, 0.5, 1.0)))
    assert weighted.class_weights.tolist() == [1.0, 2.0, 0.5, 1.0]


def test_loss_section_is_derived_from_the_registry():
    import dataclasses
    import typing

    from tufl.losses import UNSUPERVISED_LOSSES, LossConfig

    fields = {f.name: f for f in dataclasses.fields(LossConfig)}
    assert set(fields) == {"unsupervised", "lambda_u", "supervised", *UNSUPERVISED_LOSSES}
    hints = typing.get_type_hints(LossConfig)
    assert typing.get_args(hints["unsupervised"]) == (*UNSUPERVISED_LOSSES, "none")
    section = LossConfig()
    for name, loss in UNSUPERVISED_LOSSES.items():
        assert hints[name] is loss.Config and type(getattr(section, name)) is loss.Config
        section = dataclasses.replace(section, unsupervised=name)
        assert section.unsupervised_config() is getattr(section, name)
        assert isinstance(build_unsupervised_loss(name, 19, getattr(section, name)), torch.nn.Module)


def test_removed_keys_name_their_replacement():
    from tufl.runtime.typed_config import ConfigError, from_dict
    from tufl.config.schema import Config

    for key in ("compile", "cuda_graphs"):
        with pytest.raises(ConfigError, match=rf"loss.tufl.{key}: removed; `backend` chooses"):
            from_dict(Config, {"loss": {"tufl": {key: True}}})
    with pytest.raises(ConfigError, match=r"loss.tufl.colour: unknown key \(known keys here: a, a_decay"):
        from_dict(Config, {"loss": {"tufl": {"colour": 1}}})
    assert from_dict(Config, {"loss": {"tufl": {"backend": "torch"}}}).loss.tufl.backend == "torch"
