"""Sample datasets: output dicts, keyed randomness, full-resolution evaluation labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures import write_cityscapes, write_gta5

from tufl.data import (
    EvalSamples,
    SourceAugConfig,
    SourceSamples,
    TargetPairs,
    TargetViewConfig,
    build_dataset,
    eval_loader,
)


@pytest.fixture()
def cityscapes_root(tmp_path):
    write_cityscapes(tmp_path, splits=("train", "val"), cities=("aachen",), n_per_city=3, size=(32, 16),
                     labelled_splits=("val",))
    return tmp_path


def test_source_samples_are_keyed_and_typed(tmp_path):
    written = write_gta5(tmp_path, n=3, size=(40, 24), mismatched=())
    base = build_dataset("gta5", str(tmp_path), "train", 19)
    samples = SourceSamples(base, SourceAugConfig(crop_size=(16, 12), scale_range=(0.9, 1.2)))
    sample = samples[(2, 11)]
    assert set(sample) == {"image", "label", "index", "skipped"} and sample["index"] == 2
    assert sample["skipped"] == ""  # no bad file passed over
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 12, 16)
    assert sample["label"].dtype == torch.int64 and sample["label"].shape == (12, 16)
    allowed = set(base.label_lut[written.labels[2]].ravel().tolist()) | {255}
    assert set(sample["label"].unique().tolist()) <= allowed
    again = samples[(2, 11)]
    assert torch.equal(again["image"], sample["image"]) and torch.equal(again["label"], sample["label"])
    assert not torch.equal(samples[(2, 12)]["image"], sample["image"])
    with pytest.raises(IndexError):
        samples[(3, 0)]


def test_target_pairs_with_and_without_labels(cityscapes_root):
    cfg = TargetViewConfig(crop_size=(16, 16))
    unlabelled = TargetPairs(build_dataset("cityscapes", str(cityscapes_root), "train", 19), cfg)
    pair = unlabelled[(1, 5)]
    assert set(pair) == {"weak", "strong", "theta", "index", "skipped"}
    assert pair["weak"].shape == pair["strong"].shape == (3, 16, 16) and pair["strong"].dtype == torch.uint8
    assert pair["theta"].dtype == torch.float32 and pair["theta"].shape == (2, 3)
    labelled = TargetPairs(build_dataset("cityscapes", str(cityscapes_root), "val", 19), cfg)
    pair = labelled[(1, 5)]
    assert pair["label"].dtype == torch.int64 and pair["label"].shape == (16, 16)


def test_eval_samples_keep_full_resolution_labels_and_shard(cityscapes_root):
    base = build_dataset("cityscapes", str(cityscapes_root), "val", 19, resize=(16, 8))
    samples = EvalSamples(base)
    sample = samples[1]
    assert sample["image"].shape == (3, 8, 16)
    assert sample["label"].shape == (16, 32) and sample["label"].dtype == torch.int64
    assert np.array_equal(sample["label"].numpy(), base.read_label(1, full_resolution=True))
    seen = []
    for rank in range(2):
        for batch in eval_loader(samples, batch_size=1, rank=rank, world_size=2):
            seen += batch["index"].tolist()
    assert sorted(seen) == [0, 1, 2]
    with pytest.raises(ValueError, match="needs labels"):
        EvalSamples(build_dataset("cityscapes", str(cityscapes_root), "train", 19))
    with pytest.raises(ValueError, match="source samples need labels"):
        SourceSamples(build_dataset("cityscapes", str(cityscapes_root), "train", 19), SourceAugConfig())


def test_invalid_configs_are_rejected_with_their_problems(cityscapes_root):
    base = build_dataset("cityscapes", str(cityscapes_root), "val", 19)
    with pytest.raises(ValueError, match="crop_size:"):
        TargetPairs(base, TargetViewConfig(crop_size=(0, 16)))
