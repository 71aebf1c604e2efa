"""Rare-class sampling: class frequencies, image eligibility, determinism, crop redraws, index cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from fixtures import write_gta5, write_index_png
from torch.utils.data import Dataset

from tufl.runtime.typed_config import ConfigError, from_dict
from tufl.config.schema import Config
from tufl.data import ClassIndex, InfiniteLoader, build_dataset
from tufl.data.io import DataError
from tufl.data.rare_class import CROP_TRIES, RareClassSampler, RareClassSourceSamples, class_probabilities
from tufl.data.samples import SourceSamples, key_rng
from tufl.data.transforms import SourceAugConfig, augment_source

T = 0.01
MIN_PIXELS = 100
# Pixels of each class (columns) in each of 10 images (rows). Class 0 is everywhere,
# class 4 has pixels but never MIN_PIXELS of them in one image, class 5 has none.
PIXELS = np.zeros((10, 6), dtype=np.int64)
PIXELS[:, 0] = 10_000
PIXELS[0:5, 1] = 300
PIXELS[3:9, 2] = 200
PIXELS[9, 2] = 50  # below MIN_PIXELS: image 9 is never drawn for class 2
PIXELS[9, 3] = 150
PIXELS[:, 4] = 60


def _index(pixels: np.ndarray) -> ClassIndex:
    images = tuple(tuple(int(i) for i in np.flatnonzero(pixels[:, c])) for c in range(pixels.shape[1]))
    counts = tuple(tuple(int(pixels[i, c]) for i in images[c]) for c in range(pixels.shape[1]))
    return ClassIndex(pixels.shape[1], images, counts, tuple(int(t) for t in pixels.sum(0)), "test")


def _expected_probabilities() -> list[float]:
    """softmax((1 - f_c) / T) over the classes with an image of >= MIN_PIXELS (0, 1, 2, 3), by hand."""
    total = float(PIXELS.sum())
    share = [float(PIXELS[:, c].sum()) / total for c in range(6)]
    drawable = [c for c in range(6) if (PIXELS[:, c] >= MIN_PIXELS).any()]
    assert drawable == [0, 1, 2, 3]
    top = max((1 - share[c]) / T for c in drawable)
    weights = {c: math.exp((1 - share[c]) / T - top) for c in drawable}
    return [weights.get(c, 0.0) / sum(weights.values()) for c in range(6)]


def _draws(sampler: RareClassSampler, batches: int, batch_size: int, seed: int = 0) -> np.ndarray:
    stream = iter(sampler.key_batches(1000, batch_size, seed, 0, 1, 0))  # size: only sets the epoch length
    return np.array([key for _ in range(batches) for key in next(stream)], dtype=np.int64)


def test_classes_follow_the_softmax_of_their_pixel_frequencies():
    sampler = RareClassSampler(_index(PIXELS), T, MIN_PIXELS)
    expected = _expected_probabilities()
    assert np.allclose(sampler.probabilities, expected, rtol=1e-9, atol=1e-30)
    assert sampler.left_out == (4,)
    keys = _draws(sampler, batches=250, batch_size=40)  # 10 000 draws
    counts = np.bincount(keys[:, 2], minlength=6)
    assert counts[0] == counts[4] == counts[5] == 0  # p(road-like class 0) ~ 1e-42
    # Chi-square over classes 1..3 (2 degrees of freedom; 13.8 is the 0.1 % critical value).
    n = len(keys)
    chi2 = sum((counts[c] - n * expected[c]) ** 2 / (n * expected[c]) for c in (1, 2, 3))
    assert chi2 < 13.8, (counts, [n * p for p in expected])
    # At T = 1 the frequent class 0 would be drawn about one time in nine.
    assert class_probabilities(PIXELS.sum(0), 1.0, (PIXELS >= MIN_PIXELS).any(0))[0] > 0.1


def test_drawn_images_hold_their_class_and_are_uniform_among_those_that_do():
    sampler = RareClassSampler(_index(PIXELS), T, MIN_PIXELS)
    keys = _draws(sampler, batches=100, batch_size=30, seed=5)
    assert (PIXELS[keys[:, 0], keys[:, 2]] >= MIN_PIXELS).all()
    for c, eligible in ((1, [0, 1, 2, 3, 4]), (2, [3, 4, 5, 6, 7, 8]), (3, [9])):
        images = keys[keys[:, 2] == c, 0]
        assert sorted(set(images.tolist())) == eligible
        per_image = np.bincount(images, minlength=10)[eligible]
        mean = len(images) / len(eligible)
        chi2 = float(((per_image - mean) ** 2 / mean).sum())
        assert chi2 < {1: 18.5, 2: 20.5, 3: 1e-9}[c], (c, per_image)  # 0.1 % critical values, df 4 and 5
    # seeds of the augmentation draws: distinct per sample
    assert len(set(keys[:, 1].tolist())) == len(keys)


def test_stream_is_reproducible_resumes_exactly_and_differs_per_rank_and_seed():
    sampler = RareClassSampler(_index(PIXELS), T, MIN_PIXELS)

    def take(start: int, count: int, seed: int = 3, rank: int = 0, world: int = 2) -> list:
        stream = iter(sampler.key_batches(10, 2, seed, rank, world, start))
        return [next(stream) for _ in range(count)]

    full = take(0, 12)
    assert full == take(0, 12)
    assert take(7, 5) == full[7:]
    assert take(0, 12, rank=1) != full
    assert take(0, 12, seed=4) != full
    assert sampler.key_batches(10, 2, 3, 0, 2, 0).batches_per_epoch == 2  # 5 samples per rank


class KeyEcho(Dataset):
    """Returns its key, to observe which (index, seed, class) each batch holds."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, key):
        return torch.tensor([key[0], key[1] % (2**62), key[2]])


def test_infinite_loader_with_rare_class_keys_ignores_workers_and_resumes():
    sampler = RareClassSampler(_index(PIXELS), T, MIN_PIXELS)

    def take(workers: int, start: int, count: int) -> list[torch.Tensor]:
        with InfiniteLoader(KeyEcho(), 3, seed=1, num_workers=workers, start_batch=start,
                            key_batches=sampler.key_batches) as loader:
            out = [next(loader) for _ in range(count)]
            assert loader.batches_consumed == start + count and loader.batches_per_epoch == 3
        return out

    serial = take(0, 0, 6)
    assert all(torch.equal(a, b) for a, b in zip(serial, take(2, 0, 6)))
    assert all(torch.equal(a, b) for a, b in zip(serial[4:], take(0, 4, 2)))
    expected = iter(sampler.key_batches(10, 3, 1, 0, 1, 0))
    assert all(batch.tolist() == [[i, s % (2**62), c] for i, s, c in next(expected)] for batch in serial)


def test_no_drawable_class_is_a_clear_error():
    with pytest.raises(DataError, match="min_pixels"):
        RareClassSampler(_index(PIXELS), T, min_pixels=20_000)


def test_config_section_defaults_and_value_checks():
    rcs = Config().data.rare_class_sampling
    assert (rcs.enabled, rcs.temperature, rcs.min_pixels, rcs.min_crop_ratio) == (False, 0.01, 3000, 0.5)
    assert rcs.min_crop_pixels == 1500
    with pytest.raises(ConfigError, match="data.rare_class_sampling.temperature"):
        from_dict(Config, {"data": {"rare_class_sampling": {"temperature": 0}}})


# --------------------------------------------------------------------------- crops and index

ROAD, CAR = 7, 26  # Cityscapes label ids; train ids 0 and 13


@pytest.fixture()
def gta_root(tmp_path):
    """Three 32x32 GTA5 samples: road everywhere, a 6x6 car in the middle of the first two."""
    written = write_gta5(tmp_path / "gta", n=3, size=(32, 32), mismatched=())
    for k, path in enumerate(written.label_paths):
        label = np.full((32, 32), ROAD, dtype=np.uint8)
        if k < 2:
            label[13:19, 13:19] = CAR
        write_index_png(path, label, palette=True)
    return tmp_path / "gta"


def test_crops_are_redrawn_until_they_hold_the_class(gta_root):
    base = build_dataset("gta5", str(gta_root), "train", 19)
    aug = SourceAugConfig(crop_size=(8, 8), scale_range=(1.0, 1.0))
    plain = SourceSamples(base, aug)
    no_redraw = RareClassSourceSamples(base, aug, min_crop_pixels=0)
    redraw = RareClassSourceSamples(base, aug, min_crop_pixels=4)
    held_plain = held_redraw = 0
    for seed in range(40):
        key = (seed % 2, seed)
        first = plain[key]
        assert torch.equal(no_redraw[(*key, 13)]["label"], first["label"])
        assert torch.equal(redraw[key]["image"], first["image"])  # plain keys: plain samples
        # expected: the first of the key's successive crops holding 4 car pixels, else the last
        image, label = base.load(key[0])
        rng = key_rng(key)
        crops = [augment_source(image, label, aug, rng, base.interpolation) for _ in range(CROP_TRIES)]
        want = next((c for c in crops if (c[1] == 13).sum() >= 4), crops[-1])
        got = redraw[(*key, 13)]
        assert np.array_equal(got["label"].numpy(), want[1]) and np.array_equal(got["image"].numpy(),
                                                                               want[0].transpose(2, 0, 1))
        held_plain += int((first["label"] == 13).sum() >= 4)
        held_redraw += int((got["label"] == 13).sum() >= 4)
    assert held_plain <= 20 and held_redraw >= 34  # 13 and 38 of 40 with these seeds


def test_index_keeps_per_image_pixel_counts_and_rebuilds_a_version_1_cache(gta_root, tmp_path):
    dataset = build_dataset("gta5", str(gta_root), "train", 19)
    index = ClassIndex.build(dataset, progress=False)
    assert index.images_with(13) == [0, 1] and index.pixels_in_images(13) == [36, 36]
    assert index.images_with(0) == [0, 1, 2] and index.pixels_in_images(0) == [1024 - 36, 1024 - 36, 1024]
    assert index.images_with(0, min_pixels=1000) == [2] and index.images_with(13, min_pixels=37) == []
    cache = tmp_path / "cache"
    ClassIndex.build_or_load(dataset, cache, progress=False)
    (path,) = cache.glob("*.json")
    old = json.loads(path.read_text())  # the version-1 layout: no per-image pixel counts
    old["version"] = 1
    del old["image_pixels"]
    path.write_text(json.dumps(old))
    with pytest.warns(UserWarning, match="format version 1, expected 2"):
        rebuilt = ClassIndex.build_or_load(dataset, cache, progress=False)
    assert rebuilt == index and ClassIndex.from_json(path) == index
