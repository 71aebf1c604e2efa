"""The strong target view built on the training device, for a whole batch.

With ``data.target_views.strong_view`` at "device" the data workers do only the
weak view's geometry (scale, crop, flip) and draw every parameter of the strong
view: the affine ``theta`` and the photometric transform T's draws, including the
seed of each sample's noise field. :func:`finish_target_batch` then applies T and A
to the batch where the model runs, with the one implementation the workers use
(:func:`tufl.data.views.strong_views`), so a sample's strong view does not depend on
where it was built: on the CPU the two paths give the same image; on CUDA the noise
field comes from CUDA's generator (equally distributed, other numbers).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tufl.data.photometric import params_from_batch
from tufl.data.views import TargetViewConfig, strong_views


def finish_target_batch(target: dict[str, Any], cfg: TargetViewConfig) -> dict[str, Any]:
    """Build ``target["strong"]`` (``uint8`` ``[B, 3, H, W]`` on the weak view's device,
    in its memory format) from ``weak``, ``theta`` and the collated ``photometric``
    draws, which leave the batch. A batch that already has ``strong`` comes back as is.

    The draws travel as CPU tensors and move with non-blocking copies; the noise
    seeds are read from the CPU copies, so nothing waits for the device.
    """
    if "strong" in target:
        return target
    if "photometric" not in target:
        raise KeyError("target batch has neither 'strong' nor the 'photometric' draws to build it")
    out = dict(target)
    weak = out["weak"]
    params = params_from_batch(out.pop("photometric"), weak.device)
    theta = out["theta"].to(weak.device, non_blocking=True)
    strong = strong_views(weak, theta, params, cfg.photometric)
    out["strong"] = strong.contiguous(memory_format=_memory_format(weak))
    return out


def _memory_format(x: Tensor) -> torch.memory_format:
    """channels_last where ``x`` is laid out so (the trainer's ``train.channels_last``)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
