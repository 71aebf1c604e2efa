"""Torch datasets of training and evaluation samples over a :class:`SegDataset`.

Training datasets are indexed by a key ``(index, seed)``: the sample's augmentation
draws come from ``numpy.random.default_rng([seed, index])``, so a sample does not
depend on which worker builds it. :class:`tufl.data.loader.InfiniteLoader` derives
the seeds from (run seed, epoch, position).

Outputs (dicts of tensors):

* source: ``image`` uint8 ``[3, h, w]``, ``label`` int64 ``[h, w]``, ``index``;
* target: ``weak``/``strong`` uint8 ``[3, h, w]``, ``theta`` float32 ``[2, 3]``,
  ``index``, plus ``label`` (weak-view train ids) when the base dataset has labels;
  with the strong view built on the training device, ``photometric`` (T's draws, a
  dict of 0-d tensors) instead of ``strong``
  (:func:`tufl.data.device_views.finish_target_batch` builds it per batch);
* eval: ``image`` uint8 ``[3, H, W]`` (after the dataset resize), ``label`` int64 at
  the label file's full resolution, ``index``.

Training samples also carry ``skipped``: the bad files (``path<TAB>problem`` lines)
that ``skip_bad_files`` passed over to build this sample, empty almost always; the
trainer counts and names them (:mod:`tufl.train.bad_samples`), whichever worker met them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from tufl.data.base import SegDataset
from tufl.data.io import BadFileError, DataError
from tufl.data.transforms import SourceAugConfig, augment_source, image_to_tensor
from tufl.data.views import StrongViewPlace, TargetViewConfig, make_target_pair

SampleKey = tuple[int, int]
"""``(index into the base dataset, seed of the sample's augmentation draws)``."""


def key_rng(key: SampleKey) -> np.random.Generator:
    """The random generator of one keyed sample."""
    index, seed = key
    return np.random.default_rng([int(seed), int(index)])


def check_key(key: SampleKey, size: int) -> int:
    """The index of ``key``, checked against a dataset of ``size`` samples."""
    index = int(key[0])
    if not 0 <= index < size:
        raise IndexError(f"sample index {index} out of range (0..{size - 1})")
    return index


_check_key = check_key  # old private name, still imported by tufl.objective.pseudo_labels


def skipped_text(base: SegDataset) -> str:
    """The bad files ``base`` skipped since the last call, as ``path<TAB>problem`` lines."""
    return "\n".join(f"{path}\t{problem}" for path, problem in base.take_skipped())


class SourceSamples(Dataset):
    """Augmented labelled source samples (random scale, crop, flip, optional jitter)."""

    def __init__(self, base: SegDataset, cfg: SourceAugConfig) -> None:
        if not base.has_labels:
            raise ValueError(f"{base.name}: source samples need labels, but the dataset has none")
        problems = cfg.problems()
        if problems:
            raise ValueError("invalid SourceAugConfig: " + "; ".join(problems))
        self.base = base
        self.cfg = cfg

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor | int]:
        index = check_key(key, len(self.base))
        image, label = self.base.load(index)
        assert label is not None
        image, label = augment_source(image, label, self.cfg, key_rng(key), self.base.interpolation)
        return {
            "image": image_to_tensor(image),
            "label": torch.from_numpy(label.astype(np.int64)),
            "index": index,
            "skipped": skipped_text(self.base),
        }


class TargetPairs(Dataset):
    """Weak and strong views of target images, with the affine ``theta`` that aligns them.

    ``strong_view`` is where the strong view is built (the trainer resolves the
    config's "auto" for its device, :func:`tufl.data.views.resolve_strong_view`);
    None: ``cfg.strong_view``, with "auto" meaning the workers.
    """

    def __init__(self, base: SegDataset, cfg: TargetViewConfig, strong_view: StrongViewPlace | None = None) -> None:
        problems = cfg.problems()
        if problems:
            raise ValueError("invalid TargetViewConfig: " + "; ".join(problems))
        self.base = base
        self.cfg = cfg
        if strong_view not in (None, "worker", "device"):
            raise ValueError(f"TargetPairs: strong_view must be 'worker', 'device' or None, got {strong_view!r}")
        self.strong_view: StrongViewPlace = strong_view or ("device" if cfg.strong_view == "device" else "worker")

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor | int | dict[str, torch.Tensor]]:
        index = check_key(key, len(self.base))
        image, label = self.base.load(index)
        pair = make_target_pair(image, label, self.cfg, key_rng(key), self.base.interpolation, self.strong_view)
        sample: dict[str, torch.Tensor | int | dict[str, torch.Tensor]] = {
            **pair.fields(),
            "index": index,
            "skipped": skipped_text(self.base),
        }
        if pair.label is not None:
            sample["label"] = torch.from_numpy(pair.label.astype(np.int64))
        return sample


def readable_samples(base: SegDataset) -> tuple[list[int], list[tuple[str, str]]]:
    """Indices of the samples whose image and label decode, and ``(file, problem)`` of the others."""
    good, bad = [], []
    for i in range(len(base)):
        try:
            base.read_label(i, full_resolution=True)
            base.read_image(i)
        except BadFileError as exc:
            bad.append((exc.path, exc.problem))
        else:
            good.append(i)
    return good, bad


class EvalSamples(Dataset):
    """Evaluation samples: resized image, full-resolution train-id label. Indexed by int.

    A bad file is an error, unless ``skip_bad``: then every sample is read once up front
    and the unreadable ones are left out and listed in :attr:`skipped` (``(file, problem)``);
    ``index`` stays the sample's index in ``base``.
    """

    def __init__(self, base: SegDataset, skip_bad: bool = False) -> None:
        if not base.has_labels:
            raise ValueError(f"{base.name}: evaluation needs labels, but the dataset has none")
        self.base = base
        self.indices, self.skipped = readable_samples(base) if skip_bad else (list(range(len(base))), [])
        if not self.indices:
            raise DataError(f"{base.root}: no readable {base.name} sample to evaluate on")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, torch.Tensor | int]:
        index = self.indices[position]
        label = self.base.read_label(index, full_resolution=True)
        assert label is not None
        return {
            "image": image_to_tensor(self.base.read_image(index)),
            "label": torch.from_numpy(label.astype(np.int64)),
            "index": int(index),
        }
