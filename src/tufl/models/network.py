"""The network protocol: what every segmentation network of the registry declares, once.

A network is an ``nn.Module`` that maps normalised images to a list of logit maps at
feature resolution, main first (the :class:`~tufl.models.segmentor.Segmentor` around
it resizes them and applies the input convention). Its class declares:

* ``arch``: its name in ``model.arch`` (:data:`tufl.models.registry.NETWORKS`);
* ``weight_family``: which ImageNet weight layouts its encoder takes, ``"resnet"``
  (torchvision, DeepLab initialisation) or ``"mit"`` (SegFormer NVIDIA, Hugging Face);
* ``checkpoint_keys``: the ``model`` keys a tufl checkpoint of it must match;
* :meth:`from_config`: the network of a ``model`` section;
* :meth:`backbone_module`: the encoder (ImageNet weights load into it; it gets the
  backbone learning rate; ``model.freeze_bn: backbone`` freezes its BatchNorm);
* :attr:`num_outputs`: the logit maps it returns in training mode (main + auxiliary).

Heads that exist only in training (their parameters are named ``aux_*``) may be
missing from an inference network's checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from torch import nn

WEIGHT_FAMILIES = ("resnet", "mit")


class SegNetwork(nn.Module):
    """Base class of the registered networks (see the module docstring)."""

    arch: ClassVar[str] = ""
    weight_family: ClassVar[str] = "resnet"
    checkpoint_keys: ClassVar[tuple[str, ...]] = ("arch", "num_classes")

    @classmethod
    def from_config(cls, cfg: Any, training: bool) -> SegNetwork:
        """The network of a ``model`` section (``training=False``: no auxiliary heads)."""
        raise NotImplementedError

    @classmethod
    def config_problems(cls, cfg: Any) -> list[str]:
        """Problems of the ``model`` keys that only some networks take."""
        return ["multi_level: only DeepLabV2 has a multi-level head"] if cfg.multi_level else []

    @classmethod
    def weights_hint(cls, cfg: Any) -> str:
        """A hint appended when ImageNet weights do not fit the encoder ("" for none)."""
        return ""

    def backbone_module(self) -> nn.Module:
        """The encoder."""
        return self.backbone  # type: ignore[return-value]

    @property
    def num_outputs(self) -> int:
        """Logit maps returned in training mode."""
        return 1

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.backbone_module().parameters()
