"""Masked image consistency (MIC, Hoyer et al., CVPR 2023): an objective term in one file.

The student sees a copy of each target image (the weak view) with random square
patches hidden, and is trained with cross-entropy towards the teacher's
pseudo-labels of the whole image: to predict what it cannot see from the context.

* The mask: the image is cut into ``patch_size`` squares (the last row and column
  cut short by the image border); each square is hidden with probability
  ``mask_ratio``, independently, drawn from the step generator (deterministic and
  resumable). MIC draws ``U[0, 1) > ratio``; ``>=`` here, so a ratio of 0 keeps every
  patch for sure.
* Hidden pixels: MIC multiplies the *normalised* image by the mask, so a hidden
  pixel is 0 after normalisation, i.e. the network's input mean colour. Here the
  images are ``[0, 255]`` RGB and the network normalises them itself, so hidden
  pixels are set to that mean colour (rounded for ``uint8`` images): the same input.
* Before masking, the target photometric transform T may be applied (MIC's
  ``separatetrgaug``: colour-augmented target images).
* The pixels are weighted like the target pixels of the mixed loss
  (:func:`tufl.mixing.pixel_weights.confident_fraction`, ``mix.confidence_threshold``, 0.968
  as DACS/DAFormer; MIC uses its host's threshold), the loss normalised by the
  non-ignored pixels (:func:`tufl.mixing.pixel_weights.mixed_loss`), on the main head.

:class:`MicTerm` is the term (registry name ``mic``, config section ``mic``); it joins
stage one and stage two when ``mic.weight > 0``. Its teacher is the run's pseudo-label
source (:mod:`tufl.objective.pseudo_labels`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from tufl.data.photometric import photometric_batch
from tufl.mixing.pixel_weights import confident_fraction, mixed_loss
from tufl.objective.term import BuildContext, Outputs, Step, Term, TermLoss, TermSpec
from tufl.runtime.checks import MAX_CROP_SIDE, at_least, count_within, within
from tufl.runtime.draws import uniform

Photometric = Callable[[Tensor, torch.Generator], Tensor]


@dataclass(frozen=True)
class MicConfig:
    """Masked image consistency (MIC, Hoyer et al. 2023): a term on masked target images."""

    # Weight of the MIC term (Hoyer et al., CVPR 2023: its mask_lambda, default 1.0); 0 =
    # off. The student's prediction on the masked weak target view is trained towards the
    # teacher's pseudo-labels of the unmasked view, pixels weighted by the confident fraction
    # of mix.confidence_threshold (0.968; MIC uses its host's threshold), on the main head.
    # The teacher: in stage two the pseudo-labeller (pseudo_labels.source: the frozen
    # stage-one model, files, or the EMA teacher); in stage one an EMA teacher of the
    # student (pseudo_labels.ema_momentum) made for it, as MIC shares its host's EMA teacher.
    weight: float = 0.0
    # Side of the square patches that are hidden or kept, in pixels (MIC: 64).
    patch_size: int = 64
    # Probability that a patch is hidden (MIC: 0.7); hidden pixels take the network's
    # input mean colour (0 after normalisation, as in MIC).
    mask_ratio: float = 0.7
    # Apply the target photometric transform T (data.target_views.photometric) before
    # masking, as MIC colour-augments the target images it masks (its separatetrgaug mode).
    photometric: bool = True

    def problems(self) -> list[str]:
        return (at_least("weight", self.weight, 0.0, " (0 = off)")
                + count_within("patch_size", self.patch_size, 1, MAX_CROP_SIDE)
                + within("mask_ratio", self.mask_ratio, 0, 1))

    @property
    def enabled(self) -> bool:
        return self.weight > 0


def patch_mask(batch: int, height: int, width: int, patch_size: int, mask_ratio: float,
               generator: torch.Generator, device: torch.device) -> Tensor:
    """``[B, 1, H, W]`` bool, True on kept pixels: squares of ``patch_size`` hidden with
    probability ``mask_ratio`` each, drawn from ``generator``."""
    rows, cols = -(-height // patch_size), -(-width // patch_size)
    kept = uniform((batch, 1, rows, cols), generator, device) >= mask_ratio
    full = kept.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)
    return full[:, :, :height, :width]


class MaskedConsistency:
    """Masks target images and computes the MIC term (see the module docstring)."""

    def __init__(self, cfg: MicConfig, fill_rgb: tuple[float, float, float], confidence_threshold: float,
                 photometric: Photometric | None = None) -> None:
        self.cfg = cfg
        self.fill_rgb = fill_rgb
        self.confidence_threshold = confidence_threshold
        self.photometric = photometric if cfg.photometric else None
        self._fills: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    @property
    def weight(self) -> float:
        return self.cfg.weight

    def masked_images(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """``[B, 3, H, W]`` images (dtype kept) with hidden patches set to the fill colour."""
        if self.photometric is not None:
            images = self.photometric(images, generator)
        b, _, h, w = images.shape
        kept = patch_mask(b, h, w, self.cfg.patch_size, self.cfg.mask_ratio, generator, images.device)
        return torch.where(kept, images, self._fill(images.device, images.dtype))

    def _fill(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The fill colour ``[1, 3, 1, 1]`` (rounded for integer images), made once per device and dtype."""
        key = (device, dtype)
        if key not in self._fills:
            fill = torch.tensor(self.fill_rgb, dtype=torch.float64).view(1, 3, 1, 1)
            fill = fill if dtype.is_floating_point else fill.round()
            self._fills[key] = fill.to(device=device, dtype=dtype)
        return self._fills[key]

    def loss(self, logits: Tensor, pseudo_labels: Tensor, confidences: Tensor) -> Tensor:
        """Confidence-weighted cross-entropy of the masked images' logits ``[B, C, H, W]``
        towards the pseudo-labels of the unmasked images ``[B, H, W]``."""
        weights = confident_fraction(confidences, self.confidence_threshold)
        pixel_weights = weights.to(logits.device).view(-1, 1, 1).expand_as(pseudo_labels)
        return mixed_loss(logits.float(), pseudo_labels, pixel_weights)


class MicTerm(Term):
    """``mic.weight`` x the MIC loss of the masked weak view, towards the pseudo-labels."""

    spec = TermSpec("mic", ("stage1", "stage2"), "mic", MicConfig, reads=("masked",), needs_pseudo_labels=True)

    def __init__(self, masking: MaskedConsistency) -> None:
        super().__init__()
        self.masking = masking

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return cfg.mic.enabled

    @classmethod
    def build(cls, ctx: BuildContext) -> MicTerm:
        """Hidden pixels take the network's input mean colour."""
        cfg: Any = ctx.cfg
        convention = ctx.model.convention
        fill = tuple(reversed(convention.mean)) if convention.bgr else convention.mean
        photometric = cfg.data.target_views.photometric
        return cls(MaskedConsistency(cfg.mic, fill, cfg.mix.confidence_threshold,  # type: ignore[arg-type]
                                     photometric=lambda images, g: photometric_batch(images, photometric, g)))

    def inputs(self, step: Step) -> dict[str, Tensor]:
        assert step.target is not None
        return {"masked": self.masking.masked_images(step.target["weak"], step.generator)}

    def loss(self, step: Step, out: Outputs) -> TermLoss:
        assert step.pseudo_labels is not None
        labels, conf = step.pseudo_labels
        term = self.masking.loss(out.main("masked"), labels, conf)
        return TermLoss(self.masking.weight * term, {"loss_mic": term.detach()})
