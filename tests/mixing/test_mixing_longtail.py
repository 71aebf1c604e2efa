"""Long-tail class pasting: sampling, cropping, fetch retries, relations, pasting."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from tufl.data.labels import class_names
from tufl.mixing.longtail import (
    LongTailPaster,
    LongTailStats,
    crop_around_class,
    longtail_probabilities,
    sample_longtail_classes,
)
from tufl.mixing.relations import relation_matrix

NAMES = class_names(19)
RIDER, BIKE, CAR, ROAD = (NAMES.index(n) for n in ("rider", "bicycle", "car", "road"))


def _softmax_reference(thresholds: list[float]) -> list[float]:
    exps = [math.exp(1.0 / t) for t in thresholds]
    total = sum(exps)
    return [e / total for e in exps]


def test_probabilities_are_softmax_of_inverse_thresholds():
    theta = [0.3 + 0.035 * c for c in range(19)]
    got = longtail_probabilities(torch.tensor(theta))
    assert got.tolist() == pytest.approx(_softmax_reference(theta), rel=1e-5)
    available = torch.ones(19, dtype=torch.bool)
    available[[0, 5]] = False
    masked = longtail_probabilities(torch.tensor(theta), available)
    ref = _softmax_reference([t for c, t in enumerate(theta) if c not in (0, 5)])
    assert masked[0] == 0 and masked[5] == 0
    assert [p for c, p in enumerate(masked.tolist()) if c not in (0, 5)] == pytest.approx(ref, rel=1e-5)


def test_sampling_frequencies_match_softmax():
    theta = [0.3 + 0.035 * c for c in range(19)]  # low threshold = unconfident = pasted more
    draws = 20000
    classes = sample_longtail_classes(torch.tensor(theta), draws, torch.Generator().manual_seed(0))
    observed = torch.bincount(classes, minlength=19).tolist()
    expected = [p * draws for p in _softmax_reference(theta)]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
    assert chi2 < 42.3  # chi-square, 18 dof, p = 0.001
    assert observed[0] > observed[-1]


def test_instance_counts_uniform_over_choices():
    paster = LongTailPaster(lambda c, g: None, 19, k_choices=(2, 3, 4))
    draws = paster.draw(6000, torch.full((19,), 0.9), torch.Generator().manual_seed(1))
    counts = {k: sum(len(d) == k for d in draws) for k in (2, 3, 4)}
    chi2 = sum((o - 2000) ** 2 / 2000 for o in counts.values())
    assert chi2 < 13.8  # 2 dof, p = 0.001


def test_crop_centres_on_the_class_pixel_when_room():
    label = torch.full((40, 50), ROAD)
    label[20, 30] = RIDER
    image = torch.arange(40 * 50, dtype=torch.int64).remainder(251).to(torch.uint8).view(1, 40, 50).repeat(3, 1, 1)
    crop = crop_around_class(image, label, RIDER, (10, 12), torch.Generator().manual_seed(0))
    assert crop is not None
    crop_image, crop_label = crop
    assert crop_label.shape == (10, 12) and crop_image.shape == (3, 10, 12)
    assert int(crop_label[5, 6]) == RIDER  # window starts at (20 - 5, 30 - 6)
    assert torch.equal(crop_image, image[:, 15:25, 24:36])


def test_crop_is_clamped_to_the_image_and_keeps_the_class():
    g = torch.Generator().manual_seed(2)
    for trial in range(20):
        label = torch.full((30, 40), ROAD)
        y, x = torch.randint(0, 30, (1,), generator=g).item(), torch.randint(0, 40, (1,), generator=g).item()
        label[y, x] = RIDER  # possibly at a corner
        image = torch.randint(0, 256, (3, 30, 40), generator=g, dtype=torch.uint8)
        crop_image, crop_label = crop_around_class(image, label, RIDER, (16, 20), g)
        assert (crop_label == RIDER).sum() == 1
        windows = [
            (t, l) for t in range(30 - 16 + 1) for l in range(40 - 20 + 1)
            if torch.equal(crop_image, image[:, t : t + 16, l : l + 20])
        ]
        assert windows, f"trial {trial}: crop is not a window of the image"


def test_small_image_is_padded():
    label = torch.full((6, 8), RIDER)
    image = torch.full((3, 6, 8), 77, dtype=torch.uint8)
    crop_image, crop_label = crop_around_class(image, label, RIDER, (10, 12), torch.Generator())
    assert crop_label.shape == (10, 12)
    assert (crop_label == RIDER).sum() == 48 and (crop_label == 255).sum() == 120 - 48
    assert torch.equal(crop_label[2:8, 2:10], label)  # centred
    assert (crop_image[:, 2:8, 2:10] == 77).all() and crop_image.sum() == 77 * 48 * 3


def test_crop_without_the_class_is_none():
    label = torch.full((6, 8), ROAD)
    assert crop_around_class(torch.zeros(3, 6, 8, dtype=torch.uint8), label, RIDER, (4, 4), torch.Generator()) is None


class ScriptedFetch:
    """Returns a scripted sequence of (image, label) pairs and records the requests."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls: list[int] = []

    def __call__(self, class_id, generator):
        self.calls.append(class_id)
        return self.replies.pop(0) if self.replies else None


def _instance(class_id: int, size=(8, 8), value=250, extra: dict[int, slice] | None = None):
    label = torch.full(size, ROAD)
    label[2:4, 2:4] = class_id
    for cid, rows in (extra or {}).items():
        label[rows, 2:4] = cid
    return torch.full((3, *size), value, dtype=torch.uint8), label


def test_retries_until_the_class_is_visible():
    missing = _instance(CAR)  # the class is not in this image
    fetch = ScriptedFetch([missing, missing, _instance(RIDER)])
    paster = LongTailPaster(fetch, 19, fetch_attempts=4)
    stats = LongTailStats()
    found = paster.instance(RIDER, (8, 8), torch.Generator(), stats)
    assert found is not None and found.mask.sum() == 4
    assert stats.fetch_attempts == 3 and stats.missing == 0


def test_gives_up_after_the_attempts_and_counts(caplog):
    fetch = ScriptedFetch([_instance(CAR)] * 10)
    paster = LongTailPaster(fetch, 19, fetch_attempts=3)
    stats = LongTailStats()
    with caplog.at_level(logging.WARNING, logger="tufl.mixing.longtail"):
        assert paster.instance(RIDER, (8, 8), torch.Generator(), stats) is None
    assert stats.fetch_attempts == 3 and stats.missing == 1 and len(fetch.calls) == 3
    assert "rider" in caplog.text and "3 fetch attempt" in caplog.text


def test_class_not_in_index_stops_at_once():
    fetch = ScriptedFetch([])  # always None
    stats = LongTailStats()
    assert LongTailPaster(fetch, 19, fetch_attempts=5).instance(RIDER, (8, 8), torch.Generator(), stats) is None
    assert stats.fetch_attempts == 1 and stats.missing == 1


def test_bad_fetch_reply_is_reported():
    fetch = ScriptedFetch([(torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(7, 8, dtype=torch.long))])
    with pytest.raises(ValueError, match=r"fetch\(12\) returned a label of shape"):
        LongTailPaster(fetch, 19).instance(RIDER, (8, 8), torch.Generator(), LongTailStats())


def test_related_classes_come_along():
    reply = _instance(RIDER, extra={BIKE: slice(4, 6), CAR: slice(6, 8)})
    with_rel = LongTailPaster(ScriptedFetch([reply]), 19, relations=relation_matrix(19))
    inst = with_rel.instance(RIDER, (8, 8), torch.Generator(), LongTailStats())
    pasted = set(inst.label[inst.mask].tolist())
    assert pasted == {RIDER, BIKE}
    assert inst.mask.sum() == 8
    without = LongTailPaster(ScriptedFetch([reply]), 19)
    inst = without.instance(RIDER, (8, 8), torch.Generator(), LongTailStats())
    assert set(inst.label[inst.mask].tolist()) == {RIDER}


def test_paster_overwrites_flagged_samples_only():
    size = (8, 8)

    def fetch(class_id, generator):  # class rows depend on the class, so instances rarely overlap
        image = torch.full((3, *size), 200 + class_id, dtype=torch.uint8)
        label = torch.full(size, ROAD)
        label[2 * (class_id % 4) : 2 * (class_id % 4) + 2, :] = class_id
        return image, label

    paster = LongTailPaster(fetch, 19, k_choices=(2,))
    images = torch.zeros(2, 3, *size, dtype=torch.uint8)
    labels = torch.full((2, *size), 255, dtype=torch.long)
    mask = torch.zeros(2, *size, dtype=torch.bool)
    theta = torch.full((19,), 0.9)
    out_images, out_labels, out_mask, stats = paster(images, labels, mask, [True, False], theta, torch.Generator().manual_seed(4))
    assert stats.samples == 1 and stats.requested == 2 and stats.pasted == 2 and stats.missing == 0
    assert not out_mask[1].any() and torch.equal(out_images[1], images[1])
    pasted_classes = set(out_labels[0][out_mask[0]].tolist())
    assert 1 <= len(pasted_classes) <= 2 and ROAD not in pasted_classes
    for c in pasted_classes:  # each pasted pixel carries its instance's colour
        assert (out_images[0][:, out_labels[0] == c] == 200 + c).all()
    assert torch.equal(out_labels[0][~out_mask[0]], labels[0][~out_mask[0]])


def test_paster_is_deterministic():
    def fetch(class_id, generator):
        value = int(torch.randint(0, 200, (1,), generator=generator))
        return _instance(class_id, value=value)

    paster = LongTailPaster(fetch, 19)
    base = (torch.zeros(3, 3, 8, 8, dtype=torch.uint8), torch.zeros(3, 8, 8, dtype=torch.long),
            torch.zeros(3, 8, 8, dtype=torch.bool), [True, True, False])
    theta = torch.linspace(0.5, 0.99, 19)
    a = paster(*base, theta, torch.Generator().manual_seed(9))
    b = paster(*base, theta, torch.Generator().manual_seed(9))
    for x, y in zip(a[:3], b[:3]):
        assert torch.equal(x, y)
    assert a[3] == b[3]
