"""Threshold-adaptive unsupervised focal loss (TUFL): the method, as PAPER.md states it.

Per pixel ``i`` of the weak view's logits ``z1`` (warped into the strong view's
geometry) and the strong view's logits ``z2``, with ``P = softmax(z1)``,
``Q = softmax(z2)``, pseudo-class ``k = argmax_c P_c``, confidence ``m = P_k``:

    w   = |1 - Q_k|^gamma               (focal type 1)
        = |sg(P_k) - Q_k|^gamma         (focal type 2)
    l_i = sum_c lam_c [ sg(P_c) (log sg(P_c) - w log Q_c) - P_c log P_c ]

a focal-weighted soft cross-entropy from the weak to the strong view plus the
weak view's entropy (``sg`` = stop-gradient). :func:`focal_pixel_terms` is this
formula, once, in plain differentiable torch; it is the definition every faster
backend (:mod:`tufl.losses.backends`) is tested against.

Each training call then

1. updates the per-class thresholds from the batch: ``psi_c`` = the order statistic
   ``floor((N_c + 1) b theta_c^d)`` of class ``c``'s confidences plus ``theta_c``
   (:func:`tufl.losses.thresholds.order_statistic_psi`), ``theta <- a_t theta +
   (1 - a_t) psi``, capped at 0.999 (averaged over data-parallel workers);
2. keeps the pixels with ``m_i > theta_{k_i}`` (and inside the view);
3. clamps their losses at ``loss_floor`` (the authors' 1e-8: no gradient below it),
   keeps the ``ohem_ratio`` largest (OHEM) and averages; 0 when no pixel passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from tufl.losses.arguments import ConfiguredLoss, check_logit_pair
from tufl.losses.backends import (
    BACKEND_NAMES,
    FAST_BACKENDS,
    ReusedMemory,
    backend_problems,
    resolve_backend,
)
from tufl.losses.selection import thresholded_mean
from tufl.losses.thresholds import (
    average_across_workers,
    ema_thresholds,
    history_weight,
    order_statistic_psi,
)
from tufl.runtime.checks import (
    class_weight_problems,
    floor_problems,
    focal_problems,
    ratio_problems,
    threshold_problems,
)

Backend = Literal[BACKEND_NAMES]  # type: ignore[valid-type]


@dataclass(frozen=True)
class AdaptiveThresholdConfig:
    """Adaptive thresholds, the reduction and the backend: the options TUFL shares with the
    neutral cross-entropy baseline."""

    REMOVED_KEYS: ClassVar[dict[str, str]] = {
        "compile": "removed; `backend` chooses how the loss is computed (auto, torch, fused, triton)",
        "cuda_graphs": "removed; `backend` chooses how the loss is computed (auto, torch, fused, triton)",
    }

    # Initial per-class threshold.
    theta0: float = 0.8
    # History weight of the threshold update theta <- a*theta + (1-a)*psi.
    a: float = 0.9
    # psi_c = sorted confidences[floor((N_c + 1) * b * theta_c^d)] (authors' scripts: 0.8).
    b: float = 0.8
    # Exponent d of that order statistic.
    d: float = 8.0
    # Warm-up of the history weight a_t = 1 - a*exp(-t*a_decay); 0 = off.
    a_decay: float = 0.0
    # Keep this fraction of the largest per-pixel losses (1 = off).
    ohem_ratio: float = 1.0
    # Fixed per-class weights lambda_c (null = all 1).
    class_weights: tuple[float, ...] | None = None
    # Clamp each counted pixel's loss at this floor before OHEM and the mean, as the authors' release does
    # (1e-8): pixels below it get no gradient, entropy included; 0 = off (the paper's formula).
    loss_floor: float = 1e-8
    # How the per-pixel terms are computed: auto (triton on CUDA, fused elsewhere), torch (the
    # definition, autograd), fused (hand-derived gradients), triton (CUDA kernels). Same loss.
    backend: Backend = "auto"

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return (
            threshold_problems(self.theta0, self.a, self.b, self.d, self.a_decay)
            + ratio_problems("ohem_ratio", self.ohem_ratio)
            + class_weight_problems(self.class_weights)
            + floor_problems(self.loss_floor)
            + backend_problems(self.backend)
        )


@dataclass(frozen=True)
class TUFLConfig(AdaptiveThresholdConfig):
    """TUFL (PAPER.md): focal gamma and type, thresholds theta0, a, b, d, a_decay, OHEM, class
    weights, the loss floor and the backend."""

    # Focal exponent (0 = neutral cross-entropy).
    gamma: float = 2.0
    # 1: |1 - Q_c|^gamma; 2: |sg(P_c) - Q_c|^gamma.
    focal_type: Literal[1, 2] = 1
    # Stop the gradient through the focal factor (authors: no).
    detach_focal: bool = False

    def problems(self) -> list[str]:
        """Messages ``"field: what is wrong"`` for impossible values (empty if none)."""
        return super().problems() + focal_problems(self.gamma, self.focal_type)


def focal_pixel_terms(
    weak: Tensor, strong: Tensor, gamma: float, focal_type: int, class_weights: Tensor | None, detach_focal: bool,
    memory: ReusedMemory | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pixel loss ``l_i``, confidence ``m_i`` and pseudo-class ``k_i`` of ``[B, C, H, W]``
    logits, each ``[B, H, W]`` (the module docstring's formula; ``memory`` is not used).

    Computed in float32 (float64 for float64 logits). In value ``l_i = -w sum_c lam_c
    P_c log Q_c``: the entropy term and ``sg(P) log sg(P)`` cancel, and only the
    gradient of ``-P log P`` reaches the weak view.
    """
    dtype = torch.promote_types(weak.dtype, torch.float32)
    log_p = torch.log_softmax(weak.to(dtype), dim=1)
    log_q = torch.log_softmax(strong.to(dtype), dim=1)
    p = log_p.exp()
    p_sg, log_p_sg = p.detach(), log_p.detach()
    lam = 1.0 if class_weights is None else class_weights.to(dtype).view(1, -1, 1, 1)
    conf, cls = p_sg.max(dim=1, keepdim=True)
    q_k = log_q.gather(1, cls).exp()
    if gamma == 0.0:
        w = torch.ones_like(q_k)
    else:  # |base|^gamma, with the subgradient 0 at base = 0 (the slope is infinite there for gamma < 1)
        magnitude = ((1.0 if focal_type == 1 else conf) - q_k).abs()
        w = torch.where(magnitude > 0, magnitude.clamp(min=torch.finfo(dtype).tiny).pow(gamma), 0.0)
    if detach_focal:
        w = w.detach()
    per_class = lam * (p_sg * (log_p_sg - w * log_q) - p * log_p)
    return per_class.sum(dim=1), conf.squeeze(1), cls.squeeze(1)


def pixel_terms(
    backend: str, weak: Tensor, strong: Tensor, gamma: float, focal_type: int, class_weights: Tensor | None,
    detach_focal: bool, memory: ReusedMemory | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`focal_pixel_terms` computed by ``backend`` (:mod:`tufl.losses.backends`)."""
    name = resolve_backend(backend, weak.device)
    terms = focal_pixel_terms if name == "torch" else FAST_BACKENDS[name]
    return terms(weak, strong, gamma, focal_type, class_weights, detach_focal, memory)


class ThresholdedFocalLoss(ConfiguredLoss):
    """TUFL's per-pixel loss averaged over the pixels above per-class thresholds: what :class:`TUFL`
    and :class:`tufl.losses.FixedThresholdFocalLoss` share.

    Subclasses register the float32 ``[C]`` buffer ``thresholds`` and may move it in
    :meth:`adapt_thresholds`. Called as ``loss(weak_logits, strong_logits, valid=None)``
    with logits ``[B, C, H, W]`` (the weak ones already warped into the strong view) and
    an optional bool ``[B, H, W]`` mask of pixels that carry information; other pixels
    take part in nothing. The loss is computed in float32 whatever the autocast state;
    ``last_pass_fraction`` holds the (detached) fraction of valid pixels that passed the
    thresholds in the last call. ``backend`` chooses how the per-pixel terms are computed
    (:mod:`tufl.losses.backends`); all give the same loss. The fused and Triton results can
    be back-propagated once.
    """

    thresholds: Tensor

    def __init__(self, num_classes: int, cfg: Any | None = None, **overrides: Any) -> None:
        super().__init__(num_classes, cfg, **overrides)
        cfg = self.config
        self.gamma, self.focal_type, self.detach_focal = float(cfg.gamma), int(cfg.focal_type), bool(cfg.detach_focal)
        self.ohem_ratio, self.loss_floor = float(cfg.ohem_ratio), float(cfg.loss_floor)
        self.backend = cfg.backend
        self.last_pass_fraction = torch.zeros(())
        self._memory = ReusedMemory()  # CPU scratch of the fused backend (not state)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, gamma={self.gamma}, focal_type={self.focal_type}, "
            f"{self.threshold_repr()}, ohem_ratio={self.ohem_ratio}, detach_focal={self.detach_focal}, "
            f"loss_floor={self.loss_floor}, backend={self.backend!r}"
        )

    def threshold_repr(self) -> str:
        """The threshold options for :meth:`extra_repr`."""
        raise NotImplementedError

    def adapt_thresholds(self, conf: Tensor, cls: Tensor, valid: Tensor | None) -> None:
        """Called by each forward with the batch's confidences and pseudo-classes before the
        pixels are selected; fixed thresholds do nothing."""

    def forward(self, weak_logits: Tensor, strong_logits: Tensor, valid: Tensor | None = None) -> Tensor:
        check_logit_pair(weak_logits, strong_logits, valid, self.num_classes)
        with torch.autocast(device_type=weak_logits.device.type, enabled=False):
            per_pixel, conf, cls = pixel_terms(self.backend, weak_logits, strong_logits, self.gamma, self.focal_type,
                                               self.class_weights, self.detach_focal, self._memory)
            conf = conf.float()
            self.adapt_thresholds(conf, cls, valid)
            loss, self.last_pass_fraction = thresholded_mean(
                per_pixel, conf, cls, valid, self.thresholds, self.ohem_ratio, self.loss_floor
            )
        return loss


class TUFL(ThresholdedFocalLoss):
    """TUFL on pixels above adaptive per-class confidence thresholds (see the module docstring).

    ``TUFL(num_classes, cfg=None, **overrides)``: the options are the fields of
    :class:`TUFLConfig` (``cfg``, or its defaults, with ``overrides`` applied). Called like
    :class:`ThresholdedFocalLoss`. In training mode each call first updates the
    thresholds; in eval mode they are used but not updated. With ``a_decay > 0`` the
    history weight of the ``t``-th update (the ``step`` buffer) is ``a_t = 1 - a
    exp(-t a_decay)``, else ``a``. Use one instance per output head: each keeps its own
    thresholds.
    """

    Config: ClassVar[type] = TUFLConfig
    step: Tensor

    def __init__(self, num_classes: int, cfg: TUFLConfig | None = None, **overrides: Any) -> None:
        super().__init__(num_classes, cfg, **overrides)
        cfg = self.config
        self.a, self.b, self.d, self.a_decay = float(cfg.a), float(cfg.b), float(cfg.d), float(cfg.a_decay)
        self.register_buffer("thresholds", torch.full((num_classes,), float(cfg.theta0), dtype=torch.float32))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    def threshold_repr(self) -> str:
        return f"a={self.a}, b={self.b}, d={self.d}, a_decay={self.a_decay}"

    def adapt_thresholds(self, conf: Tensor, cls: Tensor, valid: Tensor | None) -> None:
        """In training mode: one threshold step (:meth:`update_thresholds`)."""
        if self.training:
            self.update_thresholds(conf, cls, valid)

    @torch.no_grad()
    def update_thresholds(self, conf: Tensor, cls: Tensor, valid: Tensor | None) -> Tensor:
        """One threshold step from a batch's confidences and pseudo-classes; returns the new thresholds."""
        min_confidence = 1.0 / (self.num_classes + 1)  # softmax maxima are at least 1 / C
        psi = order_statistic_psi(conf, cls, valid, self.thresholds, self.b, self.d, min_confidence)
        psi = average_across_workers(psi)
        a_t = history_weight(self.step, self.a, self.a_decay)
        self.thresholds.copy_(ema_thresholds(self.thresholds, psi, a_t))
        self.step += 1
        return self.thresholds


__all__ = [
    "TUFL",
    "AdaptiveThresholdConfig",
    "TUFLConfig",
    "ThresholdedFocalLoss",
    "focal_pixel_terms",
]
