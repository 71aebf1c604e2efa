"""The training objective of each mode, computed from one micro-batch.

* ``source_only``: supervised cross-entropy on source images.
* ``stage1``: supervised + ``lambda_u`` x unsupervised loss (TUFL by default)
  between the weak target view, warped into the strong view's geometry, and the
  strong view.
* ``stage2``: stage one + ``lambda_mix`` x the loss on cross-domain mixed images
  whose target pixels carry pseudo-labels of a frozen stage-one model (or of files,
  or of an EMA teacher of the student: :mod:`tufl.train.teacher`).
* either stage may add ``mic.weight`` x the masked image consistency term
  (:mod:`tufl.train.mic`) on the weak target view, towards the teacher's pseudo-labels
  (stage two: the pseudo-labeller; stage one: an EMA teacher made for it).

The supervised and unsupervised terms are averaged over the network's heads (main
and auxiliary maps), with one threshold state per head; the mixed loss is computed
on the main head (the authors' choice) or averaged over all heads. Objectives are modules so that their loss states
(TUFL thresholds) travel in checkpoints through ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tufl.data.views import warp_to_strong
from tufl.mixing.mixer import CrossDomainMixer, MixResult
from tufl.models.segmentor import SegOutput
from tufl.train.mic import MaskedConsistency
from tufl.train.pseudo_labels import predict_pseudo_labels
from tufl.train.teacher import EMATeacher

Batch = dict[str, Any]
Forward = Callable[[Tensor], SegOutput]


@dataclass
class StepOutput:
    """Total loss of a micro-batch and detached values to log."""

    loss: Tensor
    logs: dict[str, Tensor]
    mix: MixResult | None = None


def _split_heads(out: SegOutput, sizes: list[int]) -> list[list[Tensor]]:
    """Per head, the chunks of a concatenated forward pass."""
    return [list(torch.split(head.float(), sizes)) for head in out.heads()]


def _forward_chunks(forward: Forward, chunks: list[Tensor], concat: bool) -> list[list[Tensor]]:
    """Run image batches through the network; returns ``[head][chunk] -> logits``."""
    if concat:
        return _split_heads(forward(torch.cat(chunks)), [c.shape[0] for c in chunks])
    outs = [forward(c) for c in chunks]
    return [[o.heads()[h].float() for o in outs] for h in range(len(outs[0].heads()))]


class SourceOnly(nn.Module):
    """Supervised cross-entropy on the source batch."""

    needs_target = False
    snapshot_exclude: tuple[str, ...] = ()

    def __init__(self, supervised: nn.Module) -> None:
        super().__init__()
        self.supervised = supervised

    def after_optimizer_step(self, student: nn.Module, finite: Tensor, steps: int) -> None:
        """Called after every optimiser step (an EMA teacher's update); nothing here."""

    def forward(self, forward: Forward, source: Batch, target: Batch | None,
                generator: torch.Generator) -> StepOutput:
        heads = forward(source["image"]).heads()
        sup = torch.stack([self.supervised(h.float(), source["label"]) for h in heads]).mean()
        return StepOutput(sup, {"loss_sup": sup.detach()})


class Stage1(nn.Module):
    """Supervised loss on source + unsupervised consistency/entropy loss on target."""

    needs_target = True

    def __init__(self, supervised: nn.Module, unsupervised: list[nn.Module], lambda_u: float,
                 concat_forward: bool = True, teacher: EMATeacher | None = None,
                 mic: MaskedConsistency | None = None) -> None:
        super().__init__()
        self.supervised = supervised
        self.unsupervised = nn.ModuleList(unsupervised)  # one per head
        self.lambda_u = lambda_u
        self.concat_forward = concat_forward
        self.teacher = teacher  # a submodule: its weights travel in checkpoints
        self.mic = mic

    @property
    def snapshot_exclude(self) -> tuple[str, ...]:
        """State-dict prefixes the per-step snapshot skips (the teacher: see the module docstring)."""
        return ("teacher.",) if self.teacher is not None else ()

    def after_optimizer_step(self, student: nn.Module, finite: Tensor, steps: int) -> None:
        """Move the EMA teacher towards ``student`` after its ``steps``-th optimiser step
        (unchanged where ``finite`` is false)."""
        if self.teacher is not None:
            self.teacher.update(student, finite, steps)

    def mic_input(self, target: Batch, generator: torch.Generator) -> list[Tensor]:
        """The masked weak views to append to the forward pass (none without MIC)."""
        return [self.mic.masked_images(target["weak"], generator)] if self.mic is not None else []

    def add_mic(self, total: Tensor, logs: dict[str, Tensor], per_head: list[list[Tensor]],
                labels: Tensor | None, conf: Tensor | None) -> Tensor:
        """``total`` plus the weighted MIC term of the last chunk of the main head (logged)."""
        if self.mic is None or labels is None or conf is None:
            return total
        term = self.mic.loss(per_head[0][-1], labels, conf)
        logs["loss_mic"] = term.detach()
        return total + self.mic.weight * term

    @property
    def thresholds(self) -> Tensor | None:
        """Current per-class thresholds of the main head (None for losses without)."""
        return getattr(self.unsupervised[0], "thresholds", None)

    def stage1_terms(self, per_head: list[list[Tensor]], source: Batch, target: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """Supervised and unsupervised terms averaged over heads, and the pass fraction."""
        if len(per_head) != len(self.unsupervised):
            raise RuntimeError(f"network has {len(per_head)} heads but the objective {len(self.unsupervised)}")
        sups, unsups, passes = [], [], []
        for (src, weak, strong, *_), loss in zip(per_head, self.unsupervised):
            sups.append(self.supervised(src, source["label"]))
            warped, valid = warp_to_strong(weak, target["theta"])
            unsups.append(loss(warped, strong, valid))
            passed = getattr(loss, "last_pass_fraction", None)
            if passed is not None:
                passes.append(passed)
        pass_fraction = torch.stack(passes).mean() if passes else torch.zeros(())
        return torch.stack(sups).mean(), torch.stack(unsups).mean(), pass_fraction

    def forward(self, forward: Forward, source: Batch, target: Batch,
                generator: torch.Generator) -> StepOutput:
        labels = conf = None
        if self.mic is not None:
            if self.teacher is None:
                raise RuntimeError("stage1 with MIC needs an EMA teacher")
            labels, conf = self.teacher.predict(target["weak"])
        chunks = [source["image"], target["weak"], target["strong"], *self.mic_input(target, generator)]
        per_head = _forward_chunks(forward, chunks, self.concat_forward)
        sup, unsup, passed = self.stage1_terms(per_head, source, target)
        total = sup + self.lambda_u * unsup
        logs = {"loss_sup": sup.detach(), "loss_unsup": unsup.detach(), "pass_fraction": passed.detach()}
        total = self.add_mic(total, logs, per_head, labels, conf)
        return StepOutput(total, logs)


class Stage2(Stage1):
    """Stage one plus the cross-domain mixed loss (CIM). Pseudo-labels come from files
    (offline), an EMA ``teacher`` when given, else the frozen ``pseudo_labeller``."""

    def __init__(self, supervised: nn.Module, unsupervised: list[nn.Module], lambda_u: float,
                 mixer: CrossDomainMixer, lambda_mix: float, pseudo_labeller: nn.Module | None,
                 concat_forward: bool = True, mix_all_heads: bool = False,
                 teacher: EMATeacher | None = None, mic: MaskedConsistency | None = None) -> None:
        super().__init__(supervised, unsupervised, lambda_u, concat_forward, teacher, mic)
        self.mixer = mixer
        self.lambda_mix = lambda_mix
        self.mix_all_heads = mix_all_heads
        # Kept out of state_dict/parameters: frozen, restored from the init checkpoint.
        self.__dict__["pseudo_labeller"] = pseudo_labeller

    @torch.no_grad()
    def pseudo_labels(self, target: Batch) -> tuple[Tensor, Tensor]:
        """Hard pseudo-labels and confidences of the weak view (online or from files)."""
        if "pseudo_label" in target:
            return target["pseudo_label"].long(), target["confidence"].float()
        if self.teacher is not None:
            return self.teacher.predict(target["weak"])
        if self.pseudo_labeller is None:
            raise RuntimeError("stage2 needs a pseudo-labeller, an EMA teacher or offline pseudo-labels")
        return predict_pseudo_labels(self.pseudo_labeller, target["weak"])

    def forward(self, forward: Forward, source: Batch, target: Batch,
                generator: torch.Generator) -> StepOutput:
        labels, conf = self.pseudo_labels(target)
        thresholds = self.thresholds
        mix = self.mixer(
            source["image"], source["label"], target["weak"], labels, conf, generator,
            thresholds=thresholds.detach() if thresholds is not None else None,
            template_images=source.get("template_image"), template_labels=source.get("template_label"),
        )
        views = mix.views()
        chunks = [source["image"], target["weak"], target["strong"], *(v.images for v in views),
                  *self.mic_input(target, generator)]
        per_head = _forward_chunks(forward, chunks, self.concat_forward)
        sup, unsup, passed = self.stage1_terms(per_head, source, target)
        mix_heads = per_head if self.mix_all_heads else per_head[:1]
        mixed = torch.stack([
            sum(view.loss(head[3 + i]) for i, view in enumerate(views)) for head in mix_heads
        ]).mean()
        total = sup + self.lambda_u * unsup + self.lambda_mix * mixed
        logs = {"loss_sup": sup.detach(), "loss_unsup": unsup.detach(), "loss_mix": mixed.detach(),
                "pass_fraction": passed.detach(), "mix_target_weight": mix.stats.target_weight.mean()}
        total = self.add_mic(total, logs, per_head, labels, conf)
        return StepOutput(total, logs, mix)
