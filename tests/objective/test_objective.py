"""The objective as terms: which terms each stage has, how they share one forward pass, the
sum of their losses, the after-step hooks, and states of the earlier layout."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from tufl.config import Config
from tufl.models.segmentor import SegOutput
from tufl.objective import Objective, Outputs, Step, Term, TermLoss, TermSpec, stage_terms
from tufl.objective.objective import upgrade_state


class _Recorder(Term):
    """A term that adds ``adds`` to the forward pass, reads ``spec.reads`` and returns ``value``
    times the mean of its first read input's logits."""

    def __init__(self, name: str, adds: dict[str, Tensor], reads: tuple[str, ...], value: float) -> None:
        super().__init__()
        self.spec = TermSpec(name, ("stage1",), reads=reads)  # an instance's own declaration
        self.adds, self.value = adds, value
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
        self.seen: list[int] = []

    def inputs(self, step: Step) -> dict[str, Tensor]:
        return self.adds

    def loss(self, step: Step, out: Outputs) -> TermLoss:
        value = self.value * out.main(self.spec.reads[0]).mean()
        return TermLoss(value, {f"loss_{self.spec.name}": value.detach()})

    def after_step(self, student: nn.Module, finite: Tensor, steps: int) -> None:
        self.seen.append(steps)


def _forward(batches: list[Tensor]):
    def forward(images: Tensor) -> SegOutput:
        batches.append(images)
        return SegOutput(images.float()[:, :2] * 2, (images.float()[:, :2] * 3,))
    return forward


def test_terms_share_one_forward_pass_and_their_losses_add_up_in_order():
    a = torch.ones(2, 3, 4, 4)
    b = torch.full((1, 3, 4, 4), 5.0)
    first, second = _Recorder("first", {"a": a}, ("a",), 1.0), _Recorder("second", {"b": b}, ("b", "a"), 0.5)
    objective = Objective([first, second])
    seen: list[Tensor] = []
    out = objective(_forward(seen), {}, None, torch.Generator())
    assert len(seen) == 1 and torch.equal(seen[0], torch.cat([a, b]))  # one pass, inputs in term order
    assert out.loss.item() == pytest.approx(1.0 * 2 + 0.5 * 10)  # main head = 2 x input
    assert list(out.logs) == ["loss_first", "loss_second"]
    separate: list[Tensor] = []
    objective.concat_forward = False
    assert objective(_forward(separate), {}, None, torch.Generator()).loss.item() == pytest.approx(7.0)
    assert [t.shape[0] for t in separate] == [2, 1]
    objective.after_step(nn.Linear(1, 1), torch.tensor(True), 7)
    assert first.seen == second.seen == [7]
    assert list(objective.state_dict()) == ["first.calls", "second.calls"]


def test_inputs_are_checked_by_name():
    x = torch.zeros(1, 3, 2, 2)
    with pytest.raises(RuntimeError, match="'second' adds forward inputs \\['x'\\] that an earlier term"):
        Objective([_Recorder("first", {"x": x}, ("x",), 1), _Recorder("second", {"x": x}, ("x",), 1)])(
            _forward([]), {}, None, torch.Generator())
    with pytest.raises(RuntimeError, match="'first' reads forward inputs \\['weak'\\], which no term before"):
        Objective([_Recorder("first", {"x": x}, ("weak",), 1)])(_forward([]), {}, None, torch.Generator())
    with pytest.raises(ValueError, match="name 'teacher' is taken"):
        Objective([_Recorder("teacher", {"x": x}, ("x",), 1)])


def test_each_stage_is_its_configured_terms():
    cfg = Config()
    def names(mode: str, **sections) -> list[str]:
        changed = replace(cfg, experiment=replace(cfg.experiment, mode=mode),
                          **{k: replace(getattr(cfg, k), **v) for k, v in sections.items()})
        return [term.spec.name for term in stage_terms(changed)]
    assert names("source_only") == ["supervised"]
    assert names("stage1") == ["supervised", "consistency"]
    assert names("stage2") == ["supervised", "consistency", "mixing"]
    assert names("stage1", mic={"weight": 1.0}) == ["supervised", "consistency", "mic"]
    assert names("stage2", mic={"weight": 1.0}) == ["supervised", "consistency", "mixing", "mic"]
    assert names("source_only", mic={"weight": 1.0}) == ["supervised"]  # MIC trains on target images


def test_states_of_the_earlier_layout_are_renamed():
    old = {"unsupervised.0.thresholds": torch.ones(3), "unsupervised.1.step": torch.zeros(()),
           "teacher.model.net.w": torch.ones(1)}
    assert list(upgrade_state(old)) == ["consistency.losses.0.thresholds", "consistency.losses.1.step",
                                        "teacher.model.net.w"]
    assert upgrade_state({"consistency.losses.0.step": 1}) == {"consistency.losses.0.step": 1}  # today's keys


@pytest.mark.parametrize("name", ["tufl", "entropy", "max_squares"])
def test_the_consistency_term_logs_a_pass_fraction_only_for_losses_that_select_pixels(name):
    """TUFL and entropy count the pixels above their threshold; max squares selects none and
    logs no pass fraction rather than a 0 that reads as "no pixel passed"."""
    from tufl.losses.registry import build_unsupervised_loss
    from tufl.objective.consistency import ConsistencyTerm

    weak = torch.zeros(1, 3, 2, 2)
    weak[0, 0, 0, :] = 10.0  # two confident pixels (p > 0.99), two uniform (p = 1/3)
    step = Step(source={}, target={"theta": torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])},
                generator=torch.Generator())
    loss = build_unsupervised_loss(name, 3, None)
    logs = ConsistencyTerm([loss], weight=0.5).loss(step, Outputs([{"weak": weak, "strong": weak.clone()}])).logs
    if name == "max_squares":
        assert "pass_fraction" not in logs
    elif name == "entropy":  # an identity warp keeps every pixel valid; 2 of 4 are above 0.8
        assert logs["pass_fraction"].item() == pytest.approx(0.5)
    else:
        assert logs["pass_fraction"].item() == loss.last_pass_fraction.item()
