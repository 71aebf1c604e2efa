"""SGD with separate backbone/head learning rates and a warm-up + poly schedule."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tufl.models.segmentor import Segmentor


@dataclass
class OptimConfig:
    """The ``optim`` section: SGD, poly decay, optional linear warm-up."""

    # Base learning rate (backbone).
    lr: float = 2.5e-4
    # Learning-rate multiplier of the classifier heads (10x is the DeepLabV2 convention).
    head_lr_mult: float = 10.0
    # SGD momentum and weight decay.
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # Nesterov momentum.
    nesterov: bool = False
    # Apply weight decay to biases and normalisation weights too; false = only to
    # convolution and linear weights (the authors' BiSeNet optimiser).
    decay_norm_and_bias: bool = True
    # lr = base * (1 - iter / iters) ** poly_power.
    poly_power: float = 0.9
    # Linear warm-up from warmup_ratio * lr over warmup_iters iterations (0 = off).
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6

    def problems(self) -> list[str]:
        out = []
        if self.lr <= 0:
            out.append("lr: must be > 0")
        if self.head_lr_mult <= 0:
            out.append("head_lr_mult: must be > 0")
        if not 0 <= self.momentum < 1:
            out.append("momentum: must be in [0, 1)")
        if self.weight_decay < 0:
            out.append("weight_decay: must be >= 0")
        if self.poly_power < 0:
            out.append("poly_power: must be >= 0")
        if self.warmup_iters < 0:
            out.append("warmup_iters: must be >= 0")
        if not 0 < self.warmup_ratio <= 1:
            out.append("warmup_ratio: must be in (0, 1]")
        return out


def build_optimizer(model: Segmentor, cfg: OptimConfig) -> torch.optim.SGD:
    """SGD over the parameter groups ``backbone`` (lr) and ``head`` (lr x mult).

    With ``decay_norm_and_bias`` off, each group's one-dimensional parameters
    (biases, normalisation weights) form a ``<name>_no_decay`` group without weight
    decay.
    """
    param_groups = []
    for name, params in model.parameter_groups().items():
        lr = cfg.lr * (cfg.head_lr_mult if name == "head" else 1.0)
        split = {name: params}
        if not cfg.decay_norm_and_bias:
            split = {name: [p for p in params if p.dim() > 1],
                     f"{name}_no_decay": [p for p in params if p.dim() <= 1]}
        for group_name, group_params in split.items():
            group = {"params": group_params, "lr": lr, "base_lr": lr, "name": group_name}
            if group_name.endswith("_no_decay"):
                group["weight_decay"] = 0.0
            param_groups.append(group)
    param_groups = [g for g in param_groups if g["params"]]
    return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


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
