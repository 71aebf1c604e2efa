"""Class index: per-class image lists on hand-made labels, cache reuse and rebuild."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures import write_gta5, write_index_png, write_rgb_png

from tufl.data import ClassIndex, build_dataset

ROAD, SKY, CAR = 7, 23, 26  # Cityscapes label ids; train ids 0, 10, 13 of the 19 classes


def _hand_labels() -> list[np.ndarray]:
    first = np.array([[ROAD] * 8] * 2 + [[CAR] * 8] * 2, dtype=np.uint8)  # road 16, car 16
    second = np.full((4, 8), SKY, dtype=np.uint8)  # sky 32
    third = np.array([[0] * 8] + [[ROAD] * 4 + [SKY] * 4] * 3, dtype=np.uint8)  # road 12, sky 12, void 8
    return [first, second, third]


@pytest.fixture()
def gta_root(tmp_path):
    written = write_gta5(tmp_path / "gta", n=3, size=(8, 4), mismatched=())
    for path, label in zip(written.label_paths, _hand_labels()):
        write_index_png(path, label, palette=True)
    return tmp_path / "gta"


@pytest.mark.parametrize("workers", [0, 2])
def test_class_lists_and_pixel_counts(gta_root, workers):
    dataset = build_dataset("gta5", str(gta_root), "train", 19)
    index = ClassIndex.build(dataset, num_workers=workers, progress=False)
    assert index.num_classes == 19
    assert index.images_with(0) == [0, 2]  # road
    assert index.images_with(13) == [0]  # car
    assert index.images_with(10) == [1, 2]  # sky
    assert all(index.images_with(c) == [] for c in range(19) if c not in (0, 10, 13))
    expected = [0] * 19
    expected[0], expected[10], expected[13] = 28, 44, 16
    assert list(index.pixel_counts) == expected
    with pytest.raises(IndexError):
        index.images_with(19)


def test_cache_is_reused_and_rebuilt_when_files_change(gta_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = ClassIndex.build_or_load(build_dataset("gta5", str(gta_root), "train", 19), cache, progress=False)
    assert len(list(cache.glob("*.json"))) == 1

    def no_scan(*args, **kwargs):
        raise AssertionError("the cached index should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(ClassIndex, "build", classmethod(no_scan))
        again = ClassIndex.build_or_load(build_dataset("gta5", str(gta_root), "train", 19), cache, progress=False)
    assert again == first

    write_rgb_png(gta_root / "images" / "00004.png", np.zeros((4, 8, 3), dtype=np.uint8))
    write_index_png(gta_root / "labels" / "00004.png", np.full((4, 8), CAR, dtype=np.uint8), palette=True)
    grown = ClassIndex.build_or_load(build_dataset("gta5", str(gta_root), "train", 19), cache, progress=False)
    assert grown.fingerprint != first.fingerprint
    assert grown.images_with(13) == [0, 3]
    # A different class set or resize is a different index too.
    other = ClassIndex.build_or_load(build_dataset("gta5", str(gta_root), "train", 16), cache, progress=False)
    assert other.num_classes == 16 and other.images_with(12) == [0, 3]  # car is 12 of 16
    assert len(list(cache.glob("*.json"))) == 3


def test_corrupt_cache_is_rebuilt_with_a_warning(gta_root, tmp_path):
    cache = tmp_path / "cache"
    dataset = build_dataset("gta5", str(gta_root), "train", 19)
    ClassIndex.build_or_load(dataset, cache, progress=False)
    (path,) = cache.glob("*.json")
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="not a valid class index cache"):
        rebuilt = ClassIndex.build_or_load(dataset, cache, progress=False)
    assert rebuilt.images_with(0) == [0, 2]
    assert ClassIndex.from_json(path) == rebuilt
