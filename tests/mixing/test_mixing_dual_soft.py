"""dual_soft mode: template class selection, blending, and the two losses."""

from __future__ import annotations

import math

import pytest
import torch

from tufl.data.labels import class_names
from tufl.mixing.dual_soft import (
    blend_by_mask,
    class_vector,
    default_dual_longtail_classes,
    dual_soft_losses,
    dual_soft_mix,
    select_template_classes,
)

NAMES = class_names(19)


def _ids(*names: str) -> list[int]:
    return [NAMES.index(n) for n in names]


def _template(classes: list[int], h: int = 6, w: int = 8) -> torch.Tensor:
    label = torch.full((h, w), 255)
    for k, c in enumerate(classes):
        label.view(-1)[k * 2 : k * 2 + 2] = c
    return label


def test_default_longtail_lists():
    # The authors' lists (their get_func): GTA5 and SYNTHIA lists, all 13 classes for Cross-City.
    assert default_dual_longtail_classes(19) == ("rider", "bus", "train", "motorcycle", "bicycle")
    assert default_dual_longtail_classes(16) == ("wall", "fence", "traffic light", "bus")
    assert default_dual_longtail_classes(13) == class_names(13)
    with pytest.raises(ValueError, match="'train' is not one of the 16 classes"):
        class_vector(("train",), 16)


@pytest.mark.parametrize("seed", range(6))
def test_template_selection_takes_half_of_the_present_classes(seed):
    six = _ids("rider", "bus", "bicycle", "road", "building", "sky")
    five = _ids("train", "road", "building", "sky", "car")
    labels = torch.stack([_template(six), _template(five), _template(_ids("road"))])
    sel = select_template_classes(labels, 19, torch.Generator().manual_seed(seed))
    chosen = [{c for c in range(19) if sel[b, c]} for b in range(3)]
    assert len(chosen[0]) == 3 and chosen[0] <= set(six)  # ceil(6 / 2)
    assert len(chosen[1]) == 3 and chosen[1] <= set(five)  # ceil(5 / 2)
    assert chosen[2] == set(_ids("road"))  # ceil(1 / 2) = 1; ignored pixels are no class


def test_template_selection_is_uniform_over_present_classes():
    present = _ids("rider", "bus", "road", "sky")
    labels = _template(present).unsqueeze(0)
    counts = {c: 0 for c in present}
    for seed in range(400):
        sel = select_template_classes(labels, 19, torch.Generator().manual_seed(seed))
        for c in present:
            counts[c] += bool(sel[0, c])
    # each class is chosen with probability 2/4: 200 expected of 400, sd 10
    assert all(150 < n < 250 for n in counts.values())


def test_pasted_instances_join_the_mask():
    xs, ys, xt, yt, xp, yp = _batch()
    bus = NAMES.index("bus")
    region = torch.zeros(2, 5, 6, dtype=torch.bool)
    region[:, 3:, 4:] = True

    def paste(images, labels, mask):
        assert not mask[region].all()  # called after the selection, with its mask
        return (torch.where(region.unsqueeze(1), torch.full_like(images, 250), images),
                torch.where(region, torch.full_like(labels, bus), labels), mask | region)

    mix = dual_soft_mix(xs, ys, xt, yt, xp, yp, 19, torch.Generator().manual_seed(0), alpha=0.8, paste=paste)
    assert mix.mask[region].all()
    assert (mix.source_labels[region] == bus).all() and (mix.target_labels[region] == bus).all()
    blended = (0.8 * 250 + 0.2 * xs.float()).round().to(torch.uint8)
    r3 = region.unsqueeze(1).expand_as(xs)
    assert torch.equal(mix.source_images[r3], blended[r3])


def test_blend_uint8_and_float():
    mask = torch.tensor([[[True, False]]])
    tpl = torch.tensor([[[[200, 10]], [[0, 0]], [[255, 255]]]], dtype=torch.uint8)
    base = torch.tensor([[[[100, 20]], [[51, 52]], [[0, 1]]]], dtype=torch.uint8)
    out = blend_by_mask(mask, tpl, base, 0.8)
    # inside: round(0.8 * tpl + 0.2 * base) = 180, 10 (10.2), 204; outside: base exactly
    assert out[0, :, 0, 0].tolist() == [180, 10, 204]
    assert out[0, :, 0, 1].tolist() == [20, 52, 1]
    assert out.dtype == torch.uint8
    outf = blend_by_mask(mask, tpl.float(), base.float(), 0.8)
    assert outf[0, :, 0, 0].tolist() == pytest.approx([180.0, 10.2, 204.0])
    assert outf[0, :, 0, 1].tolist() == [20.0, 52.0, 1.0]


def _batch():
    g = torch.Generator().manual_seed(5)
    shape = (2, 3, 5, 6)
    xs = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    xt = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    xp = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    ys = torch.randint(0, 19, (2, 5, 6), generator=g)
    yt = torch.randint(0, 19, (2, 5, 6), generator=g)
    yp = torch.tensor(_ids("road", "rider", "bus", "car", "sky", "bicycle")).repeat(2, 5, 1)
    ys[0, 0, :3] = 255
    yt[1, 4, :] = 255
    yp[1, 1, :] = 255
    return xs, ys, xt, yt, xp, yp


def test_dual_soft_mix_images_and_labels():
    xs, ys, xt, yt, xp, yp = _batch()
    mix = dual_soft_mix(xs, ys, xt, yt, xp, yp, 19, torch.Generator().manual_seed(0), alpha=0.8)
    m = mix.mask
    expected_mask = torch.isin(yp, torch.nonzero(mix.selected[0]).flatten())
    assert torch.equal(m[0], expected_mask[0])
    blend_s = (0.8 * xp.float() + 0.2 * xs.float()).round().to(torch.uint8)
    blend_t = (0.8 * xp.float() + 0.2 * xt.float()).round().to(torch.uint8)
    m3 = m.unsqueeze(1).expand_as(xs)
    assert torch.equal(mix.source_images[m3], blend_s[m3]) and torch.equal(mix.source_images[~m3], xs[~m3])
    assert torch.equal(mix.target_images[m3], blend_t[m3]) and torch.equal(mix.target_images[~m3], xt[~m3])
    assert torch.equal(mix.source_labels, torch.where(m, yp, ys))
    assert torch.equal(mix.target_labels, torch.where(m, yp, yt))
    assert not m[yp == 255].any()


def _ce(logits: torch.Tensor, b: int, i: int, j: int, y: int) -> float:
    z = [float(logits[b, c, i, j]) for c in range(logits.shape[1])]
    return math.log(sum(math.exp(v) for v in z)) - z[y]


def _reference_loss(logits, mixed, original, weights, alpha):
    """sum_i w_i (alpha CE(mixed_i) + (1 - alpha) CE(original_i)) / #{i: a label is valid}."""
    total, count = 0.0, 0
    b_, h, w = mixed.shape
    for b in range(b_):
        for i in range(h):
            for j in range(w):
                ym, yo = int(mixed[b, i, j]), int(original[b, i, j])
                if ym == 255 and yo == 255:
                    continue
                count += 1
                term = 0.0
                if ym != 255:
                    term += alpha * _ce(logits, b, i, j, ym)
                if yo != 255:
                    term += (1 - alpha) * _ce(logits, b, i, j, yo)
                total += float(weights[b, i, j]) * term
    return total / count


def test_dual_soft_losses_match_formulas():
    xs, ys, xt, yt, xp, yp = _batch()
    alpha = 0.8
    mix = dual_soft_mix(xs, ys, xt, yt, xp, yp, 19, torch.Generator().manual_seed(1), alpha=alpha)
    g = torch.Generator().manual_seed(2)
    logits_s = torch.randn(2, 19, 5, 6, generator=g)
    logits_t = torch.randn(2, 19, 5, 6, generator=g)
    target_w = torch.rand(2, 5, 6, generator=g)
    l_src, l_tar = dual_soft_losses(logits_s, logits_t, mix, ys, yt, target_w, alpha)
    ones = torch.ones(2, 5, 6)
    assert l_src.item() == pytest.approx(_reference_loss(logits_s, mix.source_labels, ys, ones, alpha), rel=1e-5)
    assert l_tar.item() == pytest.approx(_reference_loss(logits_t, mix.target_labels, yt, target_w, alpha), rel=1e-5)


def test_losses_outside_the_mask_are_plain_cross_entropy():
    # With an empty template (all ignored) nothing is pasted: both losses reduce to CE on the originals.
    xs, ys, xt, yt, xp, _ = _batch()
    yp = torch.full((2, 5, 6), 255)
    mix = dual_soft_mix(xs, ys, xt, yt, xp, yp, 19, torch.Generator(), alpha=0.8)
    assert not mix.mask.any()
    logits = torch.randn(2, 19, 5, 6, generator=torch.Generator().manual_seed(3))
    l_src, _ = dual_soft_losses(logits, logits, mix, ys, yt, torch.ones(2, 5, 6))
    plain = torch.nn.functional.cross_entropy(logits, ys, ignore_index=255)
    assert l_src.item() == pytest.approx(plain.item(), rel=1e-5)
