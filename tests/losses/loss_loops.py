"""Loop references of TUFL shared by its tests: per-pixel losses, the masked mean and the threshold
update written out pixel by pixel and class by class, and random logits."""

from __future__ import annotations

import math

import numpy as np
import torch

from tufl.losses import TUFLConfig

C = 4
# The per-pixel options of a default TUFL: gamma, focal_type, class_weights, detach_focal.
DEFAULTS = (TUFLConfig().gamma, TUFLConfig().focal_type, None, TUFLConfig().detach_focal)


def softmax_list(logits: list[torch.Tensor]) -> list[torch.Tensor]:
    exps = [torch.exp(v) for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


def loop_pixel_losses(z1, z2, gamma, focal_type, lam, detach_focal):
    """Per-pixel PAPER.md loss with Python loops over pixels and classes.

    Returns a dict ``(b, h, w) -> (loss scalar tensor, confidence float, pseudo-class int)``.
    """
    batch, classes, height, width = z1.shape
    out = {}
    for b in range(batch):
        for h in range(height):
            for w in range(width):
                p = softmax_list([z1[b, c, h, w] for c in range(classes)])
                q = softmax_list([z2[b, c, h, w] for c in range(classes)])
                values = [float(v.detach()) for v in p]
                k = values.index(max(values))
                if focal_type == 1:
                    focal = (1 - q[k]).abs() ** gamma
                else:
                    focal = (p[k].detach() - q[k]).abs() ** gamma
                if detach_focal:
                    focal = focal.detach()
                loss = 0
                for c in range(classes):
                    sg_p = p[c].detach()
                    loss = loss + lam[c] * (sg_p * (torch.log(sg_p) - focal * torch.log(q[c])) - p[c] * torch.log(p[c]))
                out[(b, h, w)] = (loss, values[k], k)
    return out


def loop_masked_mean(pixels, valid, thresholds, ohem_ratio):
    """Mean over valid pixels above their class threshold, after OHEM; 0 if none."""
    passing = [loss for key, (loss, m, k) in pixels.items() if valid[key] and m > thresholds[k]]
    passing.sort(key=lambda v: float(v.detach()), reverse=True)
    kept = passing[: math.ceil(ohem_ratio * len(passing))]
    if not kept:
        return None
    return sum(kept) / len(kept)


def literal_psi(confs, classes, theta, b, d):
    """PAPER.md's pseudo-code, literally."""
    psi = list(theta)
    for c in range(len(theta)):
        s = [m for m, k in zip(confs, classes) if k == c]
        if not s:
            continue
        n_c = len(s)
        s = sorted(s + [theta[c]], reverse=True)
        psi[c] = s[math.floor((n_c + 1) * b * theta[c] ** d)]
    return psi


def literal_update(theta, psi, a, a_decay, t):
    a_t = 1 - a * math.exp(-t * a_decay) if a_decay > 0 else a
    # Stored as float32, like the module's buffer.
    return [float(np.float32(min(a_t * th + (1 - a_t) * ps, 0.999))) for th, ps in zip(theta, psi)]


def pixel_stats(z1, valid):
    """Confidences and pseudo-classes of the valid pixels, in float32 as TUFL sees them."""
    p = torch.softmax(z1.float(), dim=1)
    conf, cls = p.max(dim=1)
    return [float(v) for v in conf[valid]], [int(v) for v in cls[valid]]


def random_pair(seed, shape=(2, C, 3, 3), scale=2.5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z1 = (torch.randn(shape, generator=g, dtype=dtype) * scale).requires_grad_()
    z2 = (torch.randn(shape, generator=g, dtype=dtype) * scale).requires_grad_()
    return z1, z2
