"""Long-tail class pasting: extra instances of classes the model is unsure about.

On a long-tail step, ``k`` extra class instances are drawn with replacement with
probabilities ``softmax(1 / theta)`` over classes, ``theta`` being the current
TUFL thresholds (a low threshold means an unconfident class, hence more pasting).
Each instance comes from a random source image containing the class, obtained
from a caller-supplied :class:`InstanceFetch` (training uses
:class:`~tufl.mixing.source_instances.SourceInstances`), and is cropped to the training
crop size around a random pixel of the class so that the class stays visible.
The instance's pixels (the class and, when relations are enabled, its related
classes) then overwrite the mixed image and label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from tufl.data.labels import IGNORE_INDEX, class_names, is_cityscapes_set
from tufl.runtime.draws import categorical, integers

logger = logging.getLogger(__name__)


class InstanceFetch(Protocol):
    """Loads a random source image that contains a class.

    ``fetch(class_id, generator)`` picks, with ``generator``, a random image of the
    source class index that contains ``class_id`` and returns ``(image, label)``:
    ``image`` uint8 ``[3, h, w]`` RGB, ``label`` integer ``[h, w]`` train ids (255 =
    ignore), at any size (e.g. the source's training resolution). It returns
    ``None`` when no source image contains the class. Tensors may be on any
    device (normally the CPU).
    """

    def __call__(self, class_id: int, generator: torch.Generator) -> tuple[Tensor, Tensor] | None:
        ...


class Instance(NamedTuple):
    """A class instance ready to paste, at the crop size ``(H, W)``."""

    image: Tensor  # [3, H, W] uint8, 0 on padding
    label: Tensor  # [H, W] int64, 255 on padding
    mask: Tensor  # [H, W] bool, the pixels to paste
    class_id: int


@dataclass
class LongTailStats:
    """Counters of one long-tail pasting call, for logging (plain ints, no device sync)."""

    samples: int = 0  # samples that took the long-tail branch
    requested: int = 0  # class instances drawn
    pasted: int = 0  # instances pasted
    missing: int = 0  # instances given up: class not found or not visible
    fetch_attempts: int = 0  # calls to fetch


def longtail_probabilities(thresholds: Tensor, available: Tensor | None = None) -> Tensor:
    """``[C]`` float32 ``softmax(1 / theta)``; classes with ``available == False`` get 0.

    ``thresholds`` must be positive (TUFL thresholds are).
    """
    if thresholds.dim() != 1:
        raise ValueError(f"thresholds must be [C], got {tuple(thresholds.shape)}")
    logits = thresholds.detach().float().reciprocal()
    if available is not None:
        logits = logits.masked_fill(~available.to(logits.device), float("-inf"))
    return torch.softmax(logits, dim=0)


def sample_longtail_classes(
    thresholds: Tensor,
    num_draws: int,
    generator: torch.Generator,
    available: Tensor | None = None,
) -> Tensor:
    """``num_draws`` class ids drawn with replacement from :func:`longtail_probabilities`.

    The result is on the generator's device (int64).
    """
    return categorical(longtail_probabilities(thresholds, available), num_draws, generator)


def _window_start(centre: int, length: int, window: int) -> int:
    """Start of a ``window`` centred on ``centre`` and clamped to ``[0, length)``."""
    return min(max(centre - window // 2, 0), max(length - window, 0))


def crop_around_class(
    image: Tensor,
    label: Tensor,
    class_id: int,
    size: tuple[int, int],
    generator: torch.Generator,
) -> tuple[Tensor, Tensor] | None:
    """Crop ``(image, label)`` to ``size`` around a random pixel of ``class_id``.

    The window is centred on a pixel of the class drawn uniformly, then clamped
    to the image, so it always contains that pixel. An image smaller than the
    crop is padded (image 0, label 255), centred. Returns ``None`` when the label
    has no pixel of the class.
    """
    height, width = size
    h, w = label.shape
    positions = (label.reshape(-1) == class_id).nonzero().squeeze(1)
    if positions.numel() == 0:
        return None
    pick = int(integers(positions.numel(), (1,), generator).to(positions.device).item())
    y, x = divmod(int(positions[pick].item()), w)
    top, left = _window_start(y, h, height), _window_start(x, w, width)
    crop_image = image[:, top : top + height, left : left + width]
    crop_label = label[top : top + height, left : left + width].long()
    ch, cw = crop_label.shape
    if (ch, cw) == (height, width):
        return crop_image, crop_label
    oy, ox = (height - ch) // 2, (width - cw) // 2
    canvas_image = image.new_zeros(3, height, width)
    canvas_image[:, oy : oy + ch, ox : ox + cw] = crop_image
    canvas_label = crop_label.new_full((height, width), IGNORE_INDEX)
    canvas_label[oy : oy + ch, ox : ox + cw] = crop_label
    return canvas_image, canvas_label


def _check_fetched(fetched: object, class_id: int) -> tuple[Tensor, Tensor]:
    if not (isinstance(fetched, tuple) and len(fetched) == 2):
        raise TypeError(f"fetch({class_id}) must return (image, label) or None, got {type(fetched)}")
    image, label = fetched
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image)
        raise ValueError(f"fetch({class_id}) returned an image of shape {shape}, expected [3, h, w]")
    if not isinstance(label, Tensor) or tuple(label.shape) != tuple(image.shape[1:]):
        shape = tuple(label.shape) if isinstance(label, Tensor) else type(label)
        raise ValueError(
            f"fetch({class_id}) returned a label of shape {shape} for an image of shape "
            f"{tuple(image.shape)}; expected [h, w] = {tuple(image.shape[1:])}"
        )
    if image.dtype != torch.uint8 or label.is_floating_point():
        raise ValueError(
            f"fetch({class_id}) must return a uint8 image and an integer label, got "
            f"{image.dtype} and {label.dtype}"
        )
    return image, label


class LongTailPaster:
    """Draws long-tail classes, fetches and crops their instances, and pastes them.

    Args:
        fetch: loads a random source image containing a class (see :class:`InstanceFetch`).
        num_classes: ``C``.
        k_choices: the number of instances per long-tail sample is uniform over these.
        fetch_attempts: how many times an instance is fetched before it is given up
            (a fetched image may lose the class, e.g. after resizing).
        relations: optional ``[C, C]`` bool relation matrix; related classes present
            in the crop are pasted with the instance (the authors always do this).
        available: optional ``[C]`` bool, classes that can be drawn at all (e.g. those
            of the source class index); at least one must be True.

    A step with long-tail samples reads the thresholds on the host once (to draw
    the classes) and then loads images, so it is not free of host syncs; steps
    without long-tail samples touch nothing on the host.
    """

    def __init__(
        self,
        fetch: InstanceFetch,
        num_classes: int,
        k_choices: tuple[int, ...] = (2, 3, 4),
        fetch_attempts: int = 4,
        relations: Tensor | None = None,
        available: Tensor | None = None,
    ) -> None:
        if not k_choices or min(k_choices) < 0:
            raise ValueError(f"k_choices must be non-empty non-negative counts, got {k_choices}")
        if fetch_attempts < 1:
            raise ValueError(f"fetch_attempts must be >= 1, got {fetch_attempts}")
        if available is not None and (available.shape != (num_classes,) or not bool(available.any())):
            raise ValueError(
                f"available must be a [{num_classes}] bool tensor with at least one True entry"
            )
        self.fetch = fetch
        self.num_classes = num_classes
        self.k_choices = tuple(k_choices)
        self.fetch_attempts = fetch_attempts
        self.available = None if available is None else available.cpu()
        # members[c] = [C + 1] bool row: the classes pasted with an instance of c
        # (column C stands for ignored pixels and is never pasted).
        members = torch.eye(num_classes, num_classes + 1, dtype=torch.bool)
        if relations is not None:
            members[:, :num_classes] |= relations.cpu()
        self._members = members
        self._names = class_names(num_classes) if is_cityscapes_set(num_classes) else tuple(
            f"class_{i}" for i in range(num_classes))

    def draw(
        self, num_samples: int, thresholds: Tensor, generator: torch.Generator
    ) -> list[list[int]]:
        """Per sample, the class ids of its ``k`` instances (``k`` uniform over ``k_choices``)."""
        ks = integers(len(self.k_choices), (num_samples,), generator).tolist()
        longest = max(self.k_choices)
        classes = sample_longtail_classes(
            thresholds, num_samples * max(longest, 1), generator, self.available
        ).view(num_samples, -1).tolist()
        return [row[: self.k_choices[k]] for row, k in zip(classes, ks)]

    def instance(
        self, class_id: int, size: tuple[int, int], generator: torch.Generator, stats: LongTailStats
    ) -> Instance | None:
        """Fetch and crop one visible instance of ``class_id``, or ``None`` (counted in ``stats``)."""
        attempts = 0
        while attempts < self.fetch_attempts:
            attempts += 1
            stats.fetch_attempts += 1
            fetched = self.fetch(class_id, generator)
            if fetched is None:  # no source image has the class: retrying cannot help
                break
            image, label = _check_fetched(fetched, class_id)
            crop = crop_around_class(image, label, class_id, size, generator)
            if crop is not None:
                crop_image, crop_label = crop
                members = self._members[class_id].to(crop_label.device)
                index = torch.where(
                    (crop_label >= 0) & (crop_label < self.num_classes), crop_label, self.num_classes
                )
                return Instance(crop_image, crop_label, members[index], class_id)
        stats.missing += 1
        logger.warning(
            "long-tail pasting: no visible instance of class %d (%s) after %d fetch attempt(s); "
            "%d instance(s) missed in this batch",
            class_id, self._names[class_id], attempts, stats.missing,
        )
        return None

    def __call__(
        self,
        images: Tensor,
        labels: Tensor,
        mask: Tensor,
        longtail: list[bool],
        thresholds: Tensor,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor, Tensor, LongTailStats]:
        """Paste long-tail instances onto the samples flagged in ``longtail``.

        Args:
            images: ``[B, 3, H, W]`` mixed images; labels: ``[B, H, W]`` mixed labels;
            mask: ``[B, H, W]`` bool, pixels with ground-truth labels so far.
            longtail: per sample, whether it takes the long-tail branch.
            thresholds: ``[C]`` current TUFL thresholds.
            generator: source of randomness.

        Returns:
            ``(images, labels, mask, stats)`` with the instances pasted in draw order
            (later instances overwrite earlier ones) and added to ``mask``.
        """
        if len(longtail) != images.shape[0]:
            raise ValueError(f"longtail has {len(longtail)} flags for a batch of {images.shape[0]}")
        if not any(longtail):
            return images, labels, mask, LongTailStats()
        draws = self.draw(images.shape[0], thresholds, generator)
        classes = [row if flagged else [] for row, flagged in zip(draws, longtail)]
        return self.paste(images, labels, mask, classes, generator)

    def paste(
        self,
        images: Tensor,
        labels: Tensor,
        mask: Tensor,
        classes: list[list[int]],
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor, Tensor, LongTailStats]:
        """Fetch an instance of each class in ``classes[b]`` and paste it onto sample ``b``.

        Instances are pasted in list order (later ones overwrite earlier ones) and
        added to ``mask``; samples with an empty list are left as they are.
        """
        if len(classes) != images.shape[0]:
            raise ValueError(f"classes has {len(classes)} lists for a batch of {images.shape[0]}")
        stats = LongTailStats(samples=sum(1 for row in classes if row))
        if stats.samples == 0:
            return images, labels, mask, stats
        size = (images.shape[-2], images.shape[-1])
        pasted: list[list[Instance]] = [[] for _ in classes]
        for b, row in enumerate(classes):
            for class_id in row:
                stats.requested += 1
                found = self.instance(class_id, size, generator, stats)
                if found is not None:
                    pasted[b].append(found)
        stats.pasted = sum(len(p) for p in pasted)
        for slot in range(max(len(p) for p in pasted)):
            slot_images, slot_labels, slot_masks = _stack_slot(pasted, slot, size)
            slot_mask = slot_masks.to(mask.device, non_blocking=True)
            slot_images = slot_images.to(images.device, non_blocking=True).to(images.dtype)
            images = torch.where(slot_mask.unsqueeze(1), slot_images, images)
            labels = torch.where(slot_mask, slot_labels.to(labels.device, non_blocking=True), labels)
            mask = mask | slot_mask
        return images, labels, mask, stats


def _stack_slot(
    pasted: list[list[Instance]], slot: int, size: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Batch the ``slot``-th instance of every sample; samples without one paste nothing."""
    height, width = size
    images, labels, masks = [], [], []
    for instances in pasted:
        if slot < len(instances):
            inst = instances[slot]
            images.append(inst.image.cpu())
            labels.append(inst.label.cpu())
            masks.append(inst.mask.cpu())
        else:
            images.append(torch.zeros(3, height, width, dtype=torch.uint8))
            labels.append(torch.full((height, width), IGNORE_INDEX, dtype=torch.int64))
            masks.append(torch.zeros(height, width, dtype=torch.bool))
    return torch.stack(images), torch.stack(labels), torch.stack(masks)
