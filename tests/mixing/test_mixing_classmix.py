"""ClassMix: per-sample class selection, mask, mixing invariants, relations."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tufl.data.labels import class_names
from tufl.mixing.classmix import (
    class_pixel_mask,
    class_presence,
    classmix,
    half_class_count,
    longtail_class_count,
    select_random_classes,
)
from tufl.mixing.relations import add_related_classes, relation_matrix

C = 19


def _batch(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Two samples with disjoint class sets (0..4 and 10..13) and some ignored pixels."""
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(0, 100, (2, 3, 12, 14), generator=g, dtype=torch.uint8)
    target = torch.randint(150, 256, (2, 3, 12, 14), generator=g, dtype=torch.uint8)
    labels = torch.empty(2, 12, 14, dtype=torch.long)
    labels[0] = torch.randint(0, 5, (12, 14), generator=g)
    labels[1] = torch.randint(10, 14, (12, 14), generator=g)
    labels[0, :3, :3] = 255
    labels[1, -2:, :] = 255
    # make sure every intended class occurs
    labels[0, 5, :5] = torch.arange(5)
    labels[1, 5, :4] = torch.arange(10, 14)
    pseudo = torch.randint(0, C, (2, 12, 14), generator=g)
    return source, labels, target, pseudo


def test_class_presence_matches_python_sets():
    labels = torch.tensor([[[0, 3], [255, 3]], [[18, 18], [7, 200]]])
    presence = class_presence(labels, C)
    for b in range(2):
        expected = {int(v) for v in labels[b].flatten() if int(v) < C}
        assert {c for c in range(C) if presence[b, c]} == expected


def test_class_counts():
    n = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 9])
    assert half_class_count(n).tolist() == [math.ceil(v / 2) for v in n.tolist()]
    expected_lt = [min(max(math.ceil(v / 2) - 2, 1), v) for v in n.tolist()]
    assert longtail_class_count(n).tolist() == expected_lt
    assert expected_lt == [0, 1, 1, 1, 1, 1, 1, 2, 3]


@pytest.mark.parametrize("seed", range(5))
def test_each_sample_pastes_half_of_its_own_classes(seed):
    source, labels, target, pseudo = _batch()
    g = torch.Generator().manual_seed(seed)
    mix = classmix(source, labels, target, pseudo, C, g)
    own = [set(range(5)), set(range(10, 14))]
    for b in range(2):
        chosen = {c for c in range(C) if mix.selected[b, c]}
        assert chosen <= own[b]
        assert len(chosen) == math.ceil(len(own[b]) / 2)
        pasted = {int(v) for v in labels[b][mix.mask[b]]}
        assert pasted == chosen


def test_mixed_image_and_label_are_exact_copies():
    source, labels, target, pseudo = _batch()
    mix = classmix(source, labels, target, pseudo, C, torch.Generator().manual_seed(3))
    chosen = mix.selected
    for b in range(2):
        for i in range(labels.shape[1]):
            for j in range(labels.shape[2]):
                v = int(labels[b, i, j])
                inside = v < C and bool(chosen[b, v])
                assert bool(mix.mask[b, i, j]) == inside
                want_x = source[b, :, i, j] if inside else target[b, :, i, j]
                want_y = labels[b, i, j] if inside else pseudo[b, i, j]
                assert torch.equal(mix.images[b, :, i, j], want_x)
                assert int(mix.labels[b, i, j]) == int(want_y)
    assert mix.images.dtype == torch.uint8 and mix.labels.dtype == torch.long


def test_ignored_source_pixels_are_never_pasted():
    source, labels, target, pseudo = _batch()
    mix = classmix(source, labels, target, pseudo, C, torch.Generator().manual_seed(0),
                   class_count=lambda n: n)  # paste every class
    assert not mix.mask[labels == 255].any()
    assert mix.mask[labels != 255].all()


def test_selection_is_uniform_over_subsets():
    presence = torch.zeros(1, C, dtype=torch.bool)
    presence[0, [1, 4, 7, 9]] = True
    g = torch.Generator().manual_seed(11)
    draws = 3000
    counts = {s: 0 for s in itertools.combinations([1, 4, 7, 9], 2)}
    for _ in range(draws):
        sel = select_random_classes(presence, torch.tensor([2]), g)
        counts[tuple(torch.nonzero(sel[0]).flatten().tolist())] += 1
    expected = draws / len(counts)
    chi2 = sum((o - expected) ** 2 / expected for o in counts.values())
    assert chi2 < 20.5  # chi-square, 5 dof, p = 0.001


def test_custom_count_rule_per_sample():
    source, labels, target, pseudo = _batch()
    rule = lambda n: torch.tensor([1, 3])  # noqa: E731
    mix = classmix(source, labels, target, pseudo, C, torch.Generator().manual_seed(0), class_count=rule)
    assert mix.selected.sum(dim=1).tolist() == [1, 3]


def test_float_images_keep_exact_values():
    source, labels, target, pseudo = _batch()
    mix = classmix(source.float() + 0.25, labels, target.float(), pseudo, C, torch.Generator().manual_seed(1))
    m = mix.mask.unsqueeze(1).expand_as(mix.images)
    assert torch.equal(mix.images[m], (source.float() + 0.25)[m])
    assert torch.equal(mix.images[~m], target.float()[~m])


def test_deterministic_given_seed():
    source, labels, target, pseudo = _batch()
    a = classmix(source, labels, target, pseudo, C, torch.Generator().manual_seed(7))
    b = classmix(source, labels, target, pseudo, C, torch.Generator().manual_seed(7))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.images, b.images)
    others = [classmix(source, labels, target, pseudo, C, torch.Generator().manual_seed(s)).mask for s in range(8)]
    assert any(not torch.equal(a.mask, o) for o in others)


def test_bad_shapes_raise():
    source, labels, target, pseudo = _batch()
    with pytest.raises(ValueError, match="target images"):
        classmix(source, labels, target[:, :, :5], pseudo, C, torch.Generator())
    with pytest.raises(ValueError, match="source labels"):
        classmix(source, labels[:1], target, pseudo, C, torch.Generator())


def _related(num_classes: int, name: str, table: str = "by_name") -> set[str]:
    names = class_names(num_classes)
    r = relation_matrix(num_classes, table)
    return {names[j] for j in range(num_classes) if r[names.index(name), j]}


def test_relation_tables_are_the_authors_by_name():
    # Facts of the authors' release (utils/paste_utils.py), written out by hand here.
    assert _related(19, "road") == {"terrain", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"}
    assert _related(19, "sidewalk") == {"terrain", "person"}
    assert _related(19, "rider") == {"motorcycle", "bicycle"}
    assert _related(19, "bicycle") == {"rider", "motorcycle"}
    assert _related(19, "pole") == {"traffic light", "traffic sign"}
    assert _related(19, "wall") == {"fence"} and _related(19, "vegetation") == {"terrain"}
    assert _related(19, "car") == set() and _related(19, "building") == set()
    assert _related(16, "road") == {"person", "rider", "car", "bus", "motorcycle", "bicycle"}
    assert _related(16, "building") == {"pole", "traffic light", "traffic sign"}
    assert _related(16, "wall") == set()
    # 13 classes: the SYNTHIA table by name (no pole in the set) ...
    assert _related(13, "building") == {"traffic light", "traffic sign"}
    assert _related(13, "road") == {"person", "rider", "car", "bus", "motorcycle", "bicycle"}
    # ... or, as their Cross-City code does, by position in the 13-class order.
    assert _related(13, "building", "positional") == {"vegetation", "sky", "person"}
    assert _related(13, "road", "positional") == {"bus", "motorcycle", "bicycle"}
    assert _related(13, "sky", "positional") == {"vegetation", "person"}
    assert torch.equal(relation_matrix(19, "positional"), relation_matrix(19))
    for num_classes in (19, 16, 13):
        assert not relation_matrix(num_classes).diagonal().any()
    assert [int(relation_matrix(n).sum()) for n in (19, 16)] == [26, 25]
    assert int(relation_matrix(13, "positional").sum()) == 14


def test_add_related_classes_only_present_ones_one_hop():
    names = class_names(19)
    rider, bike, moto, car = (names.index(n) for n in ("rider", "bicycle", "motorcycle", "car"))
    sidewalk, terrain, vegetation = (names.index(n) for n in ("sidewalk", "terrain", "vegetation"))
    selected = torch.zeros(3, 19, dtype=torch.bool)
    presence = torch.zeros(3, 19, dtype=torch.bool)
    selected[0, rider] = True
    presence[0, [rider, bike, car]] = True  # motorcycle absent
    selected[1, car] = True
    presence[1, [car, rider, bike]] = True  # a car brings nothing (relations are directed)
    selected[2, sidewalk] = True
    presence[2, [sidewalk, terrain, vegetation]] = True
    out = add_related_classes(selected, presence, relation_matrix(19))
    assert {c for c in range(19) if out[0, c]} == {rider, bike}
    assert {c for c in range(19) if out[1, c]} == {car}
    assert {c for c in range(19) if out[2, c]} == {sidewalk, terrain}  # one hop: not vegetation


def test_classmix_with_relations_pastes_related_classes():
    names = class_names(19)
    rider, bike = names.index("rider"), names.index("bicycle")
    labels = torch.full((1, 4, 4), names.index("road"))
    labels[0, 0, :2] = rider
    labels[0, 1, :2] = bike
    labels[0, 3, 3] = names.index("sky")
    img = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    for seed in range(6):
        mix = classmix(img, labels, img + 1, labels, 19, torch.Generator().manual_seed(seed),
                       relations=relation_matrix(19))
        assert bool(mix.selected[0, rider]) == bool(mix.selected[0, bike])
        assert torch.equal(mix.mask, class_pixel_mask(labels, mix.selected))
