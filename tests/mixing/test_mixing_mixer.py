"""CrossDomainMixer end to end, MixConfig validation and the inspection grid."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from tufl.data.labels import class_names, palette
from tufl.mixing import CrossDomainMixer, MixConfig, mixed_loss, save_mix_grid, soft_mix_loss

C = 19
H, W = 12, 16
NAMES = class_names(C)


def _batch(seed: int = 0):
    """Source pixels in [0, 100), target pixels in [100, 200), instances are 250."""
    g = torch.Generator().manual_seed(seed)
    xs = torch.randint(0, 100, (2, 3, H, W), generator=g, dtype=torch.uint8)
    xt = torch.randint(100, 200, (2, 3, H, W), generator=g, dtype=torch.uint8)
    ys = torch.randint(0, 6, (2, H, W), generator=g)
    ys[1] += 6
    ys[0, 0, :6] = torch.arange(6)
    ys[1, 0, :6] = torch.arange(6, 12)
    yt = torch.randint(0, C, (2, H, W), generator=g)
    conf = torch.rand(2, H, W, generator=g)
    return xs, ys, xt, yt, conf


def _fetch(class_id, generator):
    label = torch.full((20, 24), 255, dtype=torch.long)
    top = int(torch.randint(0, 16, (1,), generator=generator))
    label[top : top + 3, 5:9] = class_id
    return torch.full((3, 20, 24), 250, dtype=torch.uint8), label


def test_default_config_is_valid_and_bad_values_are_named():
    assert MixConfig().problems() == []
    bad = MixConfig(
        mode="triple", p_longtail=1.5, longtail_k=(), confidence_threshold=2.0, boundary_band=-1,
        max_fetch_retries=-1, dual_alpha=-0.1, dual_longtail_classes=("rider", "unicorn"), lambda_mix=-1,
    )
    fields = sorted(p.split(":")[0] for p in bad.problems())
    assert fields == sorted([
        "mode", "p_longtail", "longtail_k", "confidence_threshold", "boundary_band",
        "max_fetch_retries", "dual_alpha", "dual_longtail_classes", "lambda_mix",
    ])
    assert MixConfig(longtail_k=(0, 2)).problems()[0].startswith("longtail_k:")
    with pytest.raises(ValueError, match="p_longtail"):
        CrossDomainMixer(MixConfig(p_longtail=2.0), C)


def test_mixer_needs_fetch_and_thresholds_for_longtail():
    with pytest.raises(ValueError, match="fetch"):
        CrossDomainMixer(MixConfig(p_longtail=0.3), C)
    mixer = CrossDomainMixer(MixConfig(p_longtail=0.3), C, fetch=_fetch)
    xs, ys, xt, yt, conf = _batch()
    with pytest.raises(ValueError, match="thresholds"):
        mixer(xs, ys, xt, yt, conf, torch.Generator())
    with pytest.raises(ValueError, match="dual_longtail_classes"):
        CrossDomainMixer(MixConfig(mode="dual_soft", dual_longtail_classes=("train",)), 16, fetch=_fetch)
    with pytest.raises(ValueError, match="fetch"):
        CrossDomainMixer(MixConfig(mode="dual_soft"), C)  # its long-tail instances are fetched


def test_single_mode_invariants_and_weights():
    xs, ys, xt, yt, conf = _batch()
    mixer = CrossDomainMixer(MixConfig(p_longtail=0.0), C)
    result = mixer(xs, ys, xt, yt, conf, torch.Generator().manual_seed(1))
    view = result.target
    assert result.source is None and result.views() == (view,)
    m = view.mask
    m3 = m.unsqueeze(1).expand_as(xs)
    assert torch.equal(view.images[m3], xs[m3]) and torch.equal(view.images[~m3], xt[~m3])
    assert torch.equal(view.labels, torch.where(m, ys, yt))
    for b in range(2):
        pasted = set(ys[b][m[b]].tolist())
        assert len(pasted) == 3 and pasted <= set(range(6 * b, 6 * b + 6))
        fraction = sum(float(v) >= 0.968 for v in conf[b].flatten()) / (H * W)
        assert result.stats.target_weight[b].item() == pytest.approx(fraction)
        assert torch.equal(view.weights[b][m[b]], torch.ones(int(m[b].sum())))
        assert torch.allclose(view.weights[b][~m[b]], torch.tensor(fraction))
    logits = torch.randn(2, C, H, W, generator=torch.Generator().manual_seed(0))
    assert view.loss(logits).item() == pytest.approx(mixed_loss(logits, view.labels, view.weights).item())


def test_single_mode_with_longtail_instances():
    xs, ys, xt, yt, conf = _batch()
    config = MixConfig(p_longtail=1.0, longtail_k=(3,), max_fetch_retries=0)
    mixer = CrossDomainMixer(config, C, fetch=_fetch)
    theta = torch.linspace(0.5, 0.99, C)
    result = mixer(xs, ys, xt, yt, conf, torch.Generator().manual_seed(2), thresholds=theta)
    view, stats = result.target, result.stats.longtail
    assert stats.samples == 2 and stats.requested == 6 and stats.pasted == 6 and stats.missing == 0
    instance = (view.images == 250).all(dim=1)
    assert instance.any(dim=(1, 2)).all()
    assert (view.mask[instance]).all() and (view.weights[instance] == 1).all()
    from_source = view.mask & ~instance
    for b in range(2):
        # long-tail step: max(ceil(6/2) - 2, 1) = 1 ClassMix class (partly covered by instances)
        assert len(set(ys[b][from_source[b]].tolist())) <= 1
        assert torch.equal(view.images[b][:, from_source[b]], xs[b][:, from_source[b]])
    assert torch.equal(view.images[(~view.mask).unsqueeze(1).expand_as(xt)], xt[(~view.mask).unsqueeze(1).expand_as(xt)])


def test_photometric_gets_uint8_mixed_images():
    xs, ys, xt, yt, conf = _batch()
    seen = []

    def invert(images, generator):
        seen.append(images.dtype)
        return 255 - images

    plain = CrossDomainMixer(MixConfig(p_longtail=0.0), C)(xs.float(), ys, xt.float(), yt, conf, torch.Generator().manual_seed(3))
    with_t = CrossDomainMixer(MixConfig(p_longtail=0.0), C, photometric=invert)(
        xs.float(), ys, xt.float(), yt, conf, torch.Generator().manual_seed(3)
    )
    assert seen == [torch.uint8]
    assert torch.equal(with_t.target.images, 255 - plain.target.images.to(torch.uint8))
    assert torch.equal(with_t.target.labels, plain.target.labels)


def test_dual_soft_mode_views_and_losses():
    xs, ys, xt, yt, conf = _batch()
    xp, yp = xs.flip(0), ys.flip(0)
    mixer = CrossDomainMixer(MixConfig(mode="dual_soft", dual_alpha=0.7, boundary_band=1, dual_longtail_count=0), C)
    result = mixer(xs, ys, xt, yt, conf, torch.Generator().manual_seed(4), template_images=xp, template_labels=yp)
    src, tar = result.views()
    assert src is result.source and tar is result.target
    assert torch.equal(src.labels, torch.where(src.mask, yp, ys))
    assert torch.equal(tar.labels, torch.where(tar.mask, yp, yt))
    assert torch.equal(src.original_labels, ys) and torch.equal(tar.original_labels, yt)
    assert src.weights.max() == 2.0 and (src.weights >= 1).all()  # 1, doubled in the band
    logits = torch.randn(2, C, H, W, generator=torch.Generator().manual_seed(1))
    want = soft_mix_loss(logits, tar.labels, yt, 0.7, tar.weights)
    assert tar.loss(logits).item() == pytest.approx(want.item())
    with pytest.raises(ValueError, match="template"):
        mixer(xs, ys, xt, yt, conf, torch.Generator())
    with pytest.raises(ValueError, match="only used in dual_soft"):
        CrossDomainMixer(MixConfig(p_longtail=0.0), C)(xs, ys, xt, yt, conf, torch.Generator(), template_images=xp)


@pytest.mark.parametrize("mode", ["single", "dual_soft"])
def test_mixer_is_deterministic_given_seed(mode):
    xs, ys, xt, yt, conf = _batch()
    mixer = CrossDomainMixer(MixConfig(mode=mode, p_longtail=0.5, class_relations=True), C, fetch=_fetch)
    extra = {"template_images": xs.flip(0), "template_labels": ys.flip(0)} if mode == "dual_soft" else {}
    theta = torch.full((C,), 0.8)

    def run(seed):
        return mixer(xs, ys, xt, yt, conf, torch.Generator().manual_seed(seed), thresholds=theta, **extra)

    a, b = run(5), run(5)
    for va, vb in zip(a.views(), b.views()):
        for name in ("images", "labels", "weights", "mask"):
            assert torch.equal(getattr(va, name), getattr(vb, name))
    assert a.stats.longtail == b.stats.longtail
    assert any(not torch.equal(a.target.mask, run(s).target.mask) for s in range(6, 12))


def test_dual_soft_pastes_fetched_longtail_instances_absent_from_the_template():
    xs, ys, xt, yt, conf = _batch()
    yt = yt % 12  # pseudo-labels without the long-tail classes, so that they can be told apart
    xp, yp = xs.flip(0), ys.flip(0)  # templates hold classes 0..11: no long-tail class of the list
    longtail = (16, 17, 18)  # train, motorcycle, bicycle
    fetched = []

    def fetch(class_id, generator):
        fetched.append(class_id)
        return _fetch(class_id, generator)

    names = tuple(NAMES[c] for c in longtail)
    cfg = MixConfig(mode="dual_soft", dual_alpha=0.8, dual_longtail_classes=names)
    result = CrossDomainMixer(cfg, C, fetch=fetch)(
        xs, ys, xt, yt, conf, torch.Generator().manual_seed(3), template_images=xp, template_labels=yp)
    assert result.stats.longtail.pasted == 4 and len(fetched) == 4  # two instances per template
    for b in range(2):
        assert len(set(fetched[2 * b : 2 * b + 2])) == 2 and set(fetched) <= set(longtail)
        pasted = result.target.labels[b] >= 16
        assert pasted.any() and result.target.mask[b][pasted].all()
        assert set(result.target.labels[b][pasted].tolist()) == set(fetched[2 * b : 2 * b + 2])
        assert torch.equal(result.source.labels[b][pasted], result.target.labels[b][pasted])
        # blended 0.8 instance (250) + 0.2 target; no photometric transform by default
        want = (0.8 * 250 + 0.2 * xt[b].float()).round().to(torch.uint8)
        p3 = pasted.unsqueeze(0).expand_as(xt[b])
        assert torch.equal(result.target.images[b][p3], want[p3])


@pytest.mark.parametrize("dual_photometric", [False, True])
def test_dual_soft_views_get_the_photometric_transform_only_when_asked(dual_photometric):
    xs, ys, xt, yt, conf = _batch()
    cfg = MixConfig(mode="dual_soft", dual_longtail_count=0, dual_photometric=dual_photometric)
    mixer = CrossDomainMixer(cfg, C, photometric=lambda images, g: 255 - images)
    kwargs = {"template_images": xs.flip(0), "template_labels": ys.flip(0)}
    result = mixer(xs, ys, xt, yt, conf, torch.Generator().manual_seed(0), **kwargs)
    plain = CrossDomainMixer(cfg, C)(xs, ys, xt, yt, conf, torch.Generator().manual_seed(0), **kwargs)
    for view, base in zip(result.views(), plain.views()):
        want = 255 - base.images if dual_photometric else base.images
        assert torch.equal(view.images, want)


@pytest.mark.parametrize("single_photometric", [True, False])
def test_the_single_mixed_image_gets_the_photometric_transform_unless_turned_off(single_photometric):
    xs, ys, xt, yt, conf = _batch()
    cfg = MixConfig(mode="single", p_longtail=0.0, single_photometric=single_photometric)
    result = CrossDomainMixer(cfg, C, photometric=lambda images, g: 255 - images)(
        xs, ys, xt, yt, conf, torch.Generator().manual_seed(0))
    plain = CrossDomainMixer(cfg, C)(xs, ys, xt, yt, conf, torch.Generator().manual_seed(0))
    (view,), (base,) = result.views(), plain.views()
    assert torch.equal(view.images, 255 - base.images if single_photometric else base.images)
    assert torch.equal(view.labels, base.labels)


def test_longtail_instances_bring_related_classes_by_default():
    rider, bicycle, car = NAMES.index("rider"), NAMES.index("bicycle"), NAMES.index("car")

    def fetch(class_id, generator):  # a rider on a bicycle, next to a car, in another source image
        label = torch.full((12, 16), 255, dtype=torch.long)
        label[2:6, 4:8] = rider
        label[6:9, 4:8] = bicycle
        label[6:9, 10:14] = car
        return torch.full((3, 12, 16), 250, dtype=torch.uint8), label

    xs, ys, xt, yt, conf = _batch()
    theta = torch.full((C,), 0.8)
    theta[rider] = 0.05  # softmax(1 / theta) then draws the rider almost surely
    results = {}
    for relations in (True, False):
        cfg = MixConfig(p_longtail=1.0, longtail_k=(1,), longtail_relations=relations)
        assert MixConfig().longtail_relations  # the default
        mixer = CrossDomainMixer(cfg, C, fetch=fetch)
        results[relations] = mixer(xs, ys, xt, yt, conf, torch.Generator().manual_seed(0), thresholds=theta)
    with_rel, without = results[True].target, results[False].target
    for b in range(2):
        for view, want in ((with_rel, [rider] * 16 + [bicycle] * 12), (without, [rider] * 16)):
            instance = (view.images[b] == 250).all(dim=0)  # no photometric transform here
            assert sorted(view.labels[b][instance].tolist()) == sorted(want)  # never the car


def test_save_mix_grid_round_trip(tmp_path):
    xs, ys, xt, yt, conf = _batch()
    result = CrossDomainMixer(MixConfig(p_longtail=0.0, boundary_band=1), C)(xs, ys, xt, yt, conf, torch.Generator())
    view = result.target
    labels = view.labels.clone()
    labels[0, 0, 0] = 255
    path = tmp_path / "sub" / "grid.png"
    assert save_mix_grid(path, xs, xt, view.images, labels, view.weights, palette(C)) == path
    assert os.listdir(path.parent) == ["grid.png"]  # no temporary file left behind
    grid = np.asarray(Image.open(path))
    assert grid.shape == (2 * H, 5 * W, 3)
    b = 1
    row = grid[b * H : (b + 1) * H]
    assert np.array_equal(row[:, :W], xs[b].permute(1, 2, 0).numpy())
    assert np.array_equal(row[:, W : 2 * W], xt[b].permute(1, 2, 0).numpy())
    assert np.array_equal(row[:, 2 * W : 3 * W], view.images[b].permute(1, 2, 0).numpy())
    colours = palette(C)[labels[b].numpy()]
    assert np.array_equal(row[:, 3 * W : 4 * W], colours)
    assert np.array_equal(grid[0, 3 * W], [0, 0, 0])  # ignore is black
    top = float(view.weights.max())
    grey = np.round(view.weights[b].numpy() / max(1.0, top) * 255).astype(np.uint8)
    assert np.array_equal(row[:, 4 * W :, 0], grey) and np.array_equal(row[:, 4 * W :, 2], grey)
    with pytest.raises(ValueError, match="mixed_label"):
        save_mix_grid(tmp_path / "x.png", xs, xt, view.images, labels[:1], view.weights, palette(C))
