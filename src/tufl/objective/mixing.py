"""The cross-domain mixing term (CIM, stage two): source classes pasted onto target images
labelled by the pseudo-label source, with long-tail instance pasting
(:class:`~tufl.mixing.mixer.CrossDomainMixer`, the ``mix`` section).

Each mixed view (one in ``single`` mode, two in ``dual_soft``) goes through the forward
pass as ``mixed.<i>``; its loss is computed on the main head (``mix.loss_heads: main``,
the authors' choice) or averaged over every head, and weighted by ``mix.lambda_mix``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tufl.data.photometric import photometric_batch
from tufl.mixing.config import MixConfig
from tufl.mixing.mixer import CrossDomainMixer, MixResult
from tufl.mixing.source_instances import SourceInstances
from tufl.objective.term import BuildContext, Outputs, Step, Term, TermLoss, TermSpec


class MixingTerm(Term):
    """``lambda_mix`` x the loss on the cross-domain mixed images."""

    spec = TermSpec("mixing", ("stage2",), "mix", MixConfig, needs_pseudo_labels=True)

    def __init__(self, mixer: CrossDomainMixer, weight: float, all_heads: bool) -> None:
        super().__init__()
        self.mixer = mixer
        self.weight = weight
        self.all_heads = all_heads

    @classmethod
    def build(cls, ctx: BuildContext) -> MixingTerm:
        cfg: Any = ctx.cfg
        data = ctx.data
        fetch = SourceInstances(data.source.base, data.class_index) if data.class_index is not None else None
        photometric = cfg.data.target_views.photometric
        mixer = CrossDomainMixer(
            cfg.mix, cfg.model.num_classes, fetch=fetch,
            photometric=lambda images, g: photometric_batch(images, photometric, g),
            available_classes=fetch.available() if fetch is not None else None,
        )
        return cls(mixer, cfg.mix.lambda_mix, all_heads=cfg.mix.loss_heads == "all")

    def inputs(self, step: Step) -> dict[str, Tensor]:
        assert step.target is not None and step.pseudo_labels is not None
        labels, conf = step.pseudo_labels
        source = step.source
        mix = self.mixer(
            source["image"], source["label"], step.target["weak"], labels, conf, step.generator,
            thresholds=step.shared.get("thresholds"),
            template_images=source.get("template_image"), template_labels=source.get("template_label"),
        )
        step.shared["mix"] = mix
        return {f"mixed.{i}": view.images for i, view in enumerate(mix.views())}

    def loss(self, step: Step, out: Outputs) -> TermLoss:
        mix: MixResult = step.shared["mix"]
        views = mix.views()
        heads = out.heads if self.all_heads else out.heads[:1]
        mixed = torch.stack([sum(view.loss(head[f"mixed.{i}"]) for i, view in enumerate(views))
                             for head in heads]).mean()
        return TermLoss(self.weight * mixed, {"loss_mix": mixed.detach(),
                                              "mix_target_weight": mix.stats.target_weight.mean()})
