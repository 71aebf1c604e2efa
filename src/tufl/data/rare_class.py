"""Rare-class sampling of source images (RCS; DAFormer, Hoyer et al., CVPR 2022).

Each source sample is drawn in two steps instead of walking a permutation:

1. a class ``c`` with probability ``softmax((1 - f_c) / T)``, ``f_c`` being the
   share of class ``c`` among all labelled source pixels (classes with no pixel
   are never drawn);
2. an image, uniformly among those holding at least ``min_pixels`` pixels of ``c``
   (a class without such an image is left out and named when the run starts).

Then the crop is redrawn (at most :data:`CROP_TRIES` crops; the last one is kept)
until it holds at least ``min_crop_ratio * min_pixels`` pixels of ``c``. The pixel
counts come from the cached :class:`~tufl.data.class_index.ClassIndex`, i.e. from
the labels after the dataset's resize.

Determinism: batch ``b`` of rank ``r`` draws its classes, images and augmentation
seeds from ``default_rng([seed, RCS_STREAM, r, b])``. The stream is a pure function
of (seed, rank, batch), so ``start_batch`` resumes it exactly, the worker count does
not matter, and each rank of a multi-GPU run draws its own samples. The class
travels with the key, ``(index, seed, class)``, so the worker that builds the sample
knows what the crop must hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tufl.runtime.checks import MAX_IMAGE_SIDE, count_within, within
from tufl.data.base import SegDataset
from tufl.data.class_index import ClassIndex
from tufl.data.io import DataError
from tufl.data.labels import class_names, is_cityscapes_set
from tufl.data.loader import KeyStream
from tufl.data.samples import SourceSamples, check_key, key_rng, skipped_text
from tufl.data.transforms import SourceAugConfig, augment_source, image_to_tensor

RareClassKey = tuple[int, int, int]
"""``(index into the base dataset, seed of the augmentation draws, class the crop should hold)``."""

# Crops tried per sample: DAFormer takes one and redraws it at most 10 times.
CROP_TRIES = 11
# Mixed into the generator seeds so the draws differ from any other stream of the same run seed.
RCS_STREAM = 0x524353


@dataclass(frozen=True)
class RareClassSamplingConfig:
    """Rare-class sampling of source images (DAFormer, Hoyer et al., CVPR 2022)."""

    # Draw each source sample by class first: a class c with probability
    # softmax((1 - f_c) / T), f_c its share of all source label pixels, then an image
    # holding at least min_pixels pixels of c (with replacement; an epoch still counts
    # len(source) samples). false: shuffled passes over the images, as the TUFL paper.
    # DAFormer (Hoyer et al., CVPR 2022) uses it in its GTA5/SYNTHIA runs.
    enabled: bool = False
    # T of that softmax, in [1e-6, 1e6]: smaller favours the rarest classes more. DAFormer: 0.01.
    temperature: float = 0.01
    # Pixels of the class an image must hold to be drawn for it, counted in the label
    # after the dataset's resize (DAFormer counts at the label file's resolution and
    # needs more than this many). A class with no such image is never drawn (named when
    # the run starts). DAFormer: 3000.
    min_pixels: int = 3000
    # Redraw the crop (up to 11 crops, the last kept) until it holds at least
    # min_crop_ratio * min_pixels pixels of the drawn class; 0 = keep the first crop.
    # DAFormer: 0.5.
    min_crop_ratio: float = 0.5

    @property
    def min_crop_pixels(self) -> int:
        """Pixels of the drawn class a crop must hold (0: no redraws)."""
        return int(np.ceil(self.min_crop_ratio * self.min_pixels))

    def problems(self) -> list[str]:
        return (within("temperature", self.temperature, 1e-6, 1e6)  # 1 / T stays a usable logit scale
                + count_within("min_pixels", self.min_pixels, 1, MAX_IMAGE_SIDE**2)
                + within("min_crop_ratio", self.min_crop_ratio, 0, 1))


def class_probabilities(pixel_counts: Sequence[int], temperature: float,
                        usable: np.ndarray | None = None) -> np.ndarray:
    """``softmax((1 - f_c) / T)`` over the classes with pixels (and ``usable``, if given); 0 elsewhere.

    ``f_c`` is each class's share of all the pixels in ``pixel_counts``.
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("class_probabilities: no labelled pixel at all")
    drawable = counts > 0 if usable is None else (counts > 0) & usable
    logits = (1.0 - counts / total) / temperature
    logits = np.where(drawable, logits - logits[drawable].max(initial=-np.inf), -np.inf)
    weights = np.exp(logits)
    return weights / weights.sum()


def class_labels(base: SegDataset) -> tuple[str, ...]:
    """Names of ``base``'s classes (a class definition file's, the Cityscapes sets', else numbers)."""
    class_set = getattr(base, "class_set", None)
    if class_set is not None:
        return tuple(class_set.names)
    if is_cityscapes_set(base.num_classes):
        return class_names(base.num_classes)
    return tuple(f"class {c}" for c in range(base.num_classes))


class RareClassSampler:
    """Class probabilities and per-class image lists of rare-class sampling, from a class index."""

    def __init__(self, index: ClassIndex, temperature: float, min_pixels: int) -> None:
        counts = np.asarray(index.pixel_counts, dtype=np.int64)
        lists = [np.asarray(index.images_with(c, min_pixels), dtype=np.int64) for c in range(index.num_classes)]
        sizes = np.array([len(lst) for lst in lists], dtype=np.int64)
        if counts.sum() == 0:
            raise DataError("rare-class sampling: the source labels hold no labelled pixel")
        usable = sizes > 0
        #: Classes with pixels but no image of at least ``min_pixels`` of them (never drawn).
        self.left_out = tuple(int(c) for c in np.flatnonzero((counts > 0) & ~usable))
        if not usable.any():
            raise DataError(f"rare-class sampling: no source image holds {min_pixels} pixels of any class; "
                            "lower data.rare_class_sampling.min_pixels")
        self.min_pixels = min_pixels
        self.temperature = temperature
        #: Probability of drawing each class (0 for the classes never drawn).
        self.probabilities = class_probabilities(counts, temperature, usable)
        self.classes = np.flatnonzero(self.probabilities > 0)
        self._class_p = self.probabilities[self.classes] / self.probabilities[self.classes].sum()
        self._images = np.concatenate(lists)
        self._sizes = sizes
        self._offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(classes, images)`` of ``n`` samples: classes by :attr:`probabilities`, then uniform images."""
        classes = rng.choice(self.classes, size=n, p=self._class_p)
        picks = np.minimum((rng.random(n) * self._sizes[classes]).astype(np.int64), self._sizes[classes] - 1)
        return classes, self._images[self._offsets[classes] + picks]

    def key_batches(self, size: int, batch_size: int, seed: int, rank: int, world_size: int,
                    start_batch: int) -> RareClassBatches:
        """The key stream for :class:`~tufl.data.loader.InfiniteLoader` (``key_batches=``)."""
        return RareClassBatches(self, size, batch_size, seed, rank, world_size, start_batch)

    def describe(self, names: Sequence[str], shown: int = 5) -> str:
        """One line for the run's start: the most likely classes, and those left out."""
        order = self.classes[np.argsort(-self.probabilities[self.classes], kind="stable")]
        top = ", ".join(f"{names[c]} {self.probabilities[c]:.3f}" for c in order[:shown])
        line = (f"rare-class sampling (T={self.temperature:g}, min_pixels={self.min_pixels}): "
                f"{len(self.classes)} classes, most drawn: {top}")
        if self.left_out:
            line += f"; never drawn (no image with {self.min_pixels} pixels): " + ", ".join(
                names[c] for c in self.left_out)
        return line


class RareClassBatches(KeyStream):
    """Infinite batches of :data:`RareClassKey` keys, from batch ``start_batch`` (see module docstring).

    ``batches_per_epoch`` is that of the shuffled stream of the same dataset, so epochs
    count the same number of samples with and without rare-class sampling.
    """

    def __init__(self, sampler: RareClassSampler, size: int, batch_size: int, seed: int, rank: int,
                 world_size: int, start_batch: int) -> None:
        super().__init__(size, batch_size, seed, rank, world_size, start_batch)
        self.sampler = sampler

    def batch(self, b: int) -> list[RareClassKey]:
        """Keys of batch ``b`` of this rank."""
        rng = np.random.default_rng([self.seed, RCS_STREAM, self.rank, b])
        classes, images = self.sampler.draw(rng, self.batch_size)
        seeds = rng.integers(0, 2**63 - 1, size=self.batch_size, dtype=np.int64)
        return [(int(i), int(s), int(c)) for i, s, c in zip(images, seeds, classes)]

    def __iter__(self) -> Iterator[list[RareClassKey]]:
        b = self.start_batch
        while True:
            yield self.batch(b)
            b += 1


class RareClassSourceSamples(SourceSamples):
    """:class:`SourceSamples` that also take keys ``(index, seed, class)``.

    With a class in the key, the crop is redrawn (same generator, next draws) until it
    holds ``min_crop_pixels`` pixels of the class, at most :data:`CROP_TRIES` crops,
    the last one kept. Plain ``(index, seed)`` keys give the plain samples.
    """

    def __init__(self, base: SegDataset, cfg: SourceAugConfig, min_crop_pixels: int) -> None:
        super().__init__(base, cfg)
        self.min_crop_pixels = int(min_crop_pixels)

    def __getitem__(self, key: tuple[int, ...]) -> dict[str, torch.Tensor | int]:  # type: ignore[override]
        if len(key) == 2:
            return super().__getitem__(key)  # type: ignore[arg-type]
        index = check_key(key, len(self.base))
        wanted = int(key[2])
        image, label = self.base.load(index)
        assert label is not None
        rng = key_rng((index, int(key[1])))
        for _ in range(CROP_TRIES):
            crop, crop_label = augment_source(image, label, self.cfg, rng, self.base.interpolation)
            if self.min_crop_pixels <= 0 or np.count_nonzero(crop_label == wanted) >= self.min_crop_pixels:
                break
        return {
            "image": image_to_tensor(crop),
            "label": torch.from_numpy(crop_label.astype(np.int64)),
            "index": index,
            "skipped": skipped_text(self.base),
        }
