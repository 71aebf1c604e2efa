"""SGD or AdamW with separate backbone/head learning rates and a warm-up + poly schedule.

SGD is the DeepLabV2/BiSeNet optimiser. AdamW with DAFormer's settings (lr 6e-5, betas
(0.9, 0.999), weight decay 0.01, 10x on the decoder, no weight decay on the encoder's
normalisation layers, 1500 linear warm-up iterations, poly power 1.0) trains the MiT
networks (``model.arch: daformer``).

The optimiser is torch's fused kernel where the build has it for the training device
(``optim.fused``): one kernel updates every parameter, and a step flagged non-finite
(``optimizer.found_inf``) is skipped on the device, so skipping needs no host
synchronisation (see :mod:`tufl.train.step`); fused AdamW also leaves its step count
untouched then. It computes the same update as the plain (foreach) kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tufl.models.resnet import FrozenBatchNorm2d
from tufl.runtime.checks import MAX_ITERS, above, at_least, count_within
from tufl.models.segmentor import Segmentor


@dataclass(frozen=True)
class OptimConfig:
    """The ``optim`` section: SGD or AdamW, poly decay, optional linear warm-up."""

    # sgd (DeepLabV2, BiSeNet) or adamw (torch AdamW; DAFormer/SegFormer: lr 6e-5, betas
    # (0.9, 0.999), weight_decay 0.01, head_lr_mult 10, backbone_norm_decay false,
    # warmup_iters 1500, poly_power 1.0).
    name: Literal["sgd", "adamw"] = "sgd"
    # Base learning rate (backbone): a number in (0, 100] (1e-4 and 5e-5 are read as numbers).
    lr: float = 2.5e-4
    # Learning-rate multiplier of the classifier heads, in (0, 1000] (10x is the DeepLabV2 convention).
    head_lr_mult: float = 10.0
    # SGD momentum (sgd only) and weight decay (both; AdamW's is decoupled from the gradient).
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # Nesterov momentum (sgd only).
    nesterov: bool = False
    # AdamW's moment decay rates (adamw only).
    betas: tuple[float, float] = (0.9, 0.999)
    # Weight decay on the backbone's normalisation layers (LayerNorm/BatchNorm weights and
    # biases); false = none there (DAFormer: the `norm` key with decay_mult 0, which matches the
    # MiT encoder's LayerNorms).
    backbone_norm_decay: bool = True
    # Apply weight decay to biases and normalisation weights too; false = only to
    # convolution and linear weights (the authors' BiSeNet optimiser).
    decay_norm_and_bias: bool = True
    # lr = base * (1 - iter / iters) ** poly_power.
    poly_power: float = 0.9
    # Linear warm-up from warmup_ratio * lr over warmup_iters iterations (0 = off).
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6
    # Fused SGD (one kernel for all parameters; a non-finite step is skipped on the device,
    # without a host synchronisation; same update as plain SGD): "auto" = where this torch
    # build has it for the training device (CUDA and CPU do), true = required (an error
    # where unavailable), false = the foreach kernels, a skipped step then decided on the host.
    fused: bool | Literal["auto"] = "auto"

    def problems(self) -> list[str]:
        out = above("lr", self.lr, 0.0, MAX_LR) + above("head_lr_mult", self.head_lr_mult, 0.0, MAX_LR_MULT)
        if not 0 <= self.momentum < 1:
            out.append(f"momentum: must be in [0, 1), got {self.momentum}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            out.append(f"betas: two values in [0, 1), got {list(self.betas)}")
        if self.name == "adamw" and self.nesterov:
            out.append("nesterov: only for optim.name: sgd")
        out += at_least("weight_decay", self.weight_decay, 0.0) + at_least("poly_power", self.poly_power, 0.0)
        out += count_within("warmup_iters", self.warmup_iters, 0, MAX_ITERS, " (0 = off)")
        if not 0 < self.warmup_ratio <= 1:
            out.append(f"warmup_ratio: must be in (0, 1], got {self.warmup_ratio}")
        if not (isinstance(self.fused, bool) or self.fused == "auto"):
            out.append("fused: must be auto, true or false")
        return out


# Bounds of the learning rate and of the head's multiplier: larger values only make weights
# non-finite (such steps are skipped, see tufl.train.step), so they are refused at load.
MAX_LR = 100.0
MAX_LR_MULT = 1000.0


def fused_supported(params: list[nn.Parameter]) -> bool:
    """Whether torch's fused SGD/AdamW kernels take ``params``: floating point, on a device they support."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        devices = set(_get_fused_kernels_supported_devices())
    except ImportError:  # a torch without the helper: CUDA has had fused SGD the longest
        devices = {"cuda"}
    return bool(params) and all(p.is_floating_point() and p.device.type in devices for p in params)


def use_fused(cfg: OptimConfig, params: list[nn.Parameter]) -> bool:
    """The resolved ``optim.fused`` for ``params`` (already on the training device)."""
    supported = fused_supported(params)
    if cfg.fused is True and not supported:
        devices = sorted({f"{p.device.type}/{p.dtype}" for p in params})
        raise ValueError(f"optim.fused: true, but this torch build has no fused {cfg.name} for "
                         f"{', '.join(devices)}; set optim.fused: auto")
    return supported if cfg.fused == "auto" else bool(cfg.fused)


def set_kernel(optimizer: torch.optim.Optimizer, fused: bool) -> None:
    """Select the fused or the foreach kernel in every group (``load_state_dict`` replaces the
    groups' settings with the checkpoint's, which may have been written with the other one)."""
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = (True, False) if fused else (False, None)
    if fused:
        optimizer._step_supports_amp_scaling = True  # type: ignore[attr-defined]  # GradScaler: found_inf path
    elif hasattr(optimizer, "_step_supports_amp_scaling"):
        optimizer._step_supports_amp_scaling = False  # type: ignore[attr-defined]


def is_fused(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every group of ``optimizer`` runs the fused kernel."""
    return all(group.get("fused") for group in optimizer.param_groups)


NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, FrozenBatchNorm2d)


def _norm_parameter_ids(model: Segmentor) -> set[int]:
    return {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)}


def build_optimizer(model: Segmentor, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over the parameter groups ``backbone`` (lr) and ``head`` (lr x mult).

    With ``decay_norm_and_bias`` off, each group's one-dimensional parameters
    (biases, normalisation weights) form a ``<name>_no_decay`` group without weight
    decay; with ``backbone_norm_decay`` off, the backbone's normalisation-layer
    parameters do. The model must already be on its training device (``optim.fused`` is
    resolved for it).
    """
    norm_ids = set() if cfg.backbone_norm_decay else _norm_parameter_ids(model)
    param_groups = []
    for name, params in model.parameter_groups().items():
        lr = cfg.lr * (cfg.head_lr_mult if name == "head" else 1.0)
        exempt = [(not cfg.decay_norm_and_bias and p.dim() <= 1) or (name == "backbone" and id(p) in norm_ids)
                  for p in params]
        split = {name: [p for p, e in zip(params, exempt) if not e],
                 f"{name}_no_decay": [p for p, e in zip(params, exempt) if e]}
        for group_name, group_params in split.items():
            group = {"params": group_params, "lr": lr, "base_lr": lr, "name": group_name}
            if group_name.endswith("_no_decay"):
                group["weight_decay"] = 0.0
            param_groups.append(group)
    param_groups = [g for g in param_groups if g["params"]]
    fused = use_fused(cfg, [p for g in param_groups for p in g["params"]])
    if cfg.name == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                                 fused=fused or None)
    return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov, fused=fused or None)


def lr_factor(iteration: int, total: int, cfg: OptimConfig) -> float:
    """Multiplier of the base learning rate at ``iteration`` (0-based)."""
    if iteration < cfg.warmup_iters:
        alpha = iteration / cfg.warmup_iters
        return cfg.warmup_ratio + (1.0 - cfg.warmup_ratio) * alpha
    return max(0.0, 1.0 - iteration / total) ** cfg.poly_power


def set_learning_rate(optimizer: torch.optim.Optimizer, iteration: int, total: int, cfg: OptimConfig) -> float:
    """Apply the schedule; return the backbone learning rate."""
    factor = lr_factor(iteration, total, cfg)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return optimizer.param_groups[0]["lr"]
