"""Random draws from an explicit generator, delivered on the data's device.

Every random number of the mixing package comes from the ``torch.Generator`` the
caller passes in. Numbers are drawn on the *generator's* device (CPU or an
accelerator) and then moved to the device of the data, so a given seed on a
given generator device always yields the same mix, whatever device the images
live on. A CPU generator is the recommended choice: the long-tail path takes a
few host-side decisions per step (which image to load), and with a CPU
generator those need no device synchronisation.
"""

from __future__ import annotations

import torch
from torch import Tensor


def uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """``U[0, 1)`` float32 numbers of ``shape``, drawn from ``generator``, on ``device``."""
    values = torch.rand(shape, generator=generator, device=generator.device)
    return values.to(device, non_blocking=True)


def integers(high: int, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Integers uniform in ``[0, high)``, drawn on the generator's device (int64)."""
    return torch.randint(0, high, shape, generator=generator, device=generator.device)


def categorical(
    probabilities: Tensor, num_draws: int, generator: torch.Generator
) -> Tensor:
    """``num_draws`` indices drawn with replacement from ``probabilities`` ``[C]``.

    The draw happens on the generator's device; the result stays there (int64).
    """
    probs = probabilities.detach().to(generator.device, torch.float32)
    return torch.multinomial(probs, num_draws, replacement=True, generator=generator)
