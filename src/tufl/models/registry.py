"""The network registry: every segmentation network by the name ``model.arch`` gives it.

Adding a network is one :class:`~tufl.models.network.SegNetwork` subclass (its
``from_config``, encoder, weight family and output count, see
:mod:`tufl.models.network` and ``docs/extending.md``) and one entry here.
"""

from __future__ import annotations

from tufl.models.bisenet import BiSeNet
from tufl.models.daformer import DAFormer
from tufl.models.deeplabv2 import DeepLabV2
from tufl.models.network import SegNetwork
from tufl.runtime.registry import Registry

# model.arch -> the network; the order is the order of docs and help texts.
NETWORKS: Registry[type[SegNetwork]] = Registry("network")
for _network in (DeepLabV2, BiSeNet, DAFormer):
    NETWORKS.register(_network.arch, _network)
