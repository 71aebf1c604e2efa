"""The EMA teacher (pseudo_labels.source: ema): the DACS/DAFormer average, its modes, the
optimiser leaving it alone, non-finite steps, and an exact resume with the teacher."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import runs
from tufl.runtime.errors import ConfigError
from tufl.runtime import checkpoint_files as ckpt
from tufl.train.engine import Trainer
from tufl.objective.objective import Objective
from tufl.runtime.stop_signals import Preempted
from tufl.objective.teacher import EMATeacher, ema_alpha


def _stage2_tree(scene_info, source_only_run, out, iters=6, **sections):
    sections.setdefault("pseudo_labels", {}).setdefault("source", "ema")
    return runs.run_tree(scene_info, out, "stage2", iters,
                         model={"pretrained": str(source_only_run / "checkpoint_last.pt")}, **sections)


def test_warm_up_rule_is_a_plain_average_then_the_momentum():
    assert ema_alpha(0.999, 1) == 0.5
    assert ema_alpha(0.999, 2) == pytest.approx(2 / 3)
    assert ema_alpha(0.999, 10**6) == 0.999
    assert ema_alpha(0.99, 99) == 0.99 and ema_alpha(0.99, 98) == pytest.approx(1 - 1 / 99)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout2d(0.5)
        self.frozen = nn.Parameter(torch.randn(4), requires_grad=False)

    def forward(self, x):
        return self.drop(self.bn(self.conv(x))) + self.frozen.view(1, -1, 1, 1)


def test_teacher_equals_the_hand_computed_average_and_ignores_non_finite_steps():
    torch.manual_seed(0)
    student = _Tiny()
    start = {n: p.detach().double().clone() for n, p in student.named_parameters()}
    teacher = EMATeacher(student, momentum=0.6)
    assert all(not p.requires_grad for p in teacher.parameters())
    expected = dict(start)
    finite, not_finite = torch.tensor(True), torch.tensor(False)
    for step in range(1, 5):
        with torch.no_grad():
            for p in student.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p))
        alpha = [0.5, 0.6, 0.6, 0.6][step - 1]  # min(1 - 1/(k+1), 0.6), written out
        for name in ("conv.weight", "conv.bias", "bn.weight", "bn.bias"):
            expected[name] = alpha * expected[name] + (1 - alpha) * dict(student.named_parameters())[name].double()
        teacher.update(student, finite, step)
        before = {k: v.clone() for k, v in teacher.state_dict().items()}
        teacher.update(student, not_finite, step)  # a dropped step: bit for bit no change
        assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    own = dict(teacher.model.named_parameters())
    for name, value in expected.items():
        torch.testing.assert_close(own[name].double(), value, rtol=1e-6, atol=1e-7)
    assert torch.equal(own["frozen"].double(), start["frozen"])  # not trainable: never averaged
    assert not torch.allclose(own["conv.weight"].double(), start["conv.weight"])


def test_with_a_high_momentum_the_first_updates_give_the_plain_mean_of_the_weights_seen():
    student = nn.Conv2d(3, 2, 1)
    seen = [student.weight.detach().clone()]
    teacher = EMATeacher(student, momentum=0.999)
    for step in (1, 2, 3):
        with torch.no_grad():
            student.weight.mul_(1.5).add_(0.25)
        seen.append(student.weight.detach().clone())
        teacher.update(student, torch.tensor(True), step)
    torch.testing.assert_close(teacher.model.weight, torch.stack(seen).mean(0), rtol=1e-6, atol=1e-6)


def test_teacher_modes_no_dropout_batch_statistics_and_no_state_change():
    torch.manual_seed(1)
    student = _Tiny().train()
    teacher = EMATeacher(student, momentum=0.99)
    teacher.eval()  # the trainer never does; the teacher keeps its modes anyway
    assert not teacher.model.drop.training and teacher.model.bn.training
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    x = torch.rand(2, 3, 5, 5)
    with torch.no_grad():
        a, b = teacher.model(x), teacher.model(x)
        mean = student.conv(x).mean(dim=(0, 2, 3))
    assert torch.equal(a, b)  # no dropout
    assert all(torch.equal(state[k], v) for k, v in teacher.state_dict().items())  # running stats untouched
    # batch statistics: the per-channel mean of the BN output (before the frozen offset) is ~beta = 0
    centred = (a - teacher.model.frozen.view(1, -1, 1, 1)).mean(dim=(0, 2, 3))
    torch.testing.assert_close(centred, torch.zeros(4), atol=1e-5, rtol=0)
    assert not torch.allclose(mean, torch.zeros(4), atol=1e-3)  # the input had non-zero means


def test_stage2_ema_trainer_averages_the_student_and_the_optimiser_never_touches_the_teacher(
        scene_info, source_only_run, tmp_path, monkeypatch):
    tree = _stage2_tree(scene_info, source_only_run, tmp_path / "ema", pseudo_labels={"ema_momentum": 0.7})
    trainer = Trainer(runs.config(tree))
    try:
        objective = trainer.objective
        assert objective.names == ["supervised", "consistency", "mixing"]
        assert objective.teacher is not None and objective.pseudo_labels.labeller is None
        teacher = dict(objective.teacher.model.named_parameters())
        optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
        assert not optimised & {id(p) for p in teacher.values()}
        assert all(not p.requires_grad for p in teacher.values())
        snapshot_ids = {id(t) for t in trainer.snapshot.collect()}
        assert not snapshot_ids & {id(t) for t in objective.teacher.state_dict(keep_vars=True).values()}
        student = dict(trainer.model.named_parameters())
        names = [n for n, p in student.items() if p.requires_grad]
        assert all(torch.equal(teacher[n], student[n]) for n in student)  # starts from stage one
        expected = {n: student[n].detach().double().clone() for n in names}
        trainer.model.train()
        for step in (1, 2):
            assert bool(trainer.train_step().finite)
            trainer.iteration += 1
            alpha = min(1 - 1 / (step + 1), 0.7)
            for n in names:
                expected[n] = alpha * expected[n] + (1 - alpha) * student[n].detach().double()
        for n in names:
            torch.testing.assert_close(teacher[n].double(), expected[n], rtol=1e-5, atol=1e-6)
        assert any(not torch.equal(teacher[n], student[n]) for n in names)
        # a non-finite step leaves teacher and student exactly as they were
        original = Objective.forward

        def nan_forward(self, *args):
            out = original(self, *args)
            out.loss = out.loss * float("nan")
            return out

        monkeypatch.setattr(Objective, "forward", nan_forward)
        before = {k: v.clone() for k, v in objective.state_dict().items()}
        weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        assert not bool(trainer.train_step().finite)
        assert all(torch.equal(before[k], v) for k, v in objective.state_dict().items())
        assert all(torch.equal(weights[k], v) for k, v in trainer.model.state_dict().items())
    finally:
        for loader in (trainer.source_loader, trainer.target_loader):
            loader.close()


class _StopAt:
    """A stop request once the trainer has done ``iteration`` iterations (like SIGTERM)."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration
        self.trainer: Trainer | None = None

    def stop_requested(self) -> str | None:
        return "SIGTERM" if self.trainer is not None and self.trainer.iteration >= self.iteration else None


def test_resumed_ema_mic_run_reproduces_an_uninterrupted_one_bit_for_bit(scene_info, source_only_run, tmp_path):
    extra = {"mic": {"weight": 1.0, "patch_size": 8}, "mix": {"p_longtail": 0.0}, "train": {"checkpoint_every": 2},
             "data": {"val": None}}
    straight = Trainer(runs.config(_stage2_tree(scene_info, source_only_run, tmp_path / "straight", 4, **extra)))
    straight.run()
    killed_tree = _stage2_tree(scene_info, source_only_run, tmp_path / "killed", 4, **extra)
    stop = _StopAt(1)  # stops between checkpoints: the stop writes one
    first = Trainer(runs.config(killed_tree), stop=stop)  # type: ignore[arg-type]
    stop.trainer = first
    with pytest.raises(Preempted):
        first.run()
    Trainer(runs.config(killed_tree), resume="auto").run()
    a = ckpt.load_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")
    b = ckpt.load_checkpoint(tmp_path / "killed" / "checkpoint_last.pt")
    assert a["iteration"] == b["iteration"] == 4
    teacher_keys = [k for k in a["losses"] if k.startswith("teacher.")]
    assert teacher_keys and a["losses"].keys() == b["losses"].keys()
    for part in ("model", "losses"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"
    # the teacher moved away from the student (so comparing it means something)
    assert any(not torch.equal(a["losses"][f"teacher.model.{k}"], a["model"][k]) for k in a["model"]
               if f"teacher.model.{k}" in a["losses"] and a["model"][k].is_floating_point())


def test_ema_source_and_mic_are_refused_where_they_cannot_work(scene_info, tmp_path):
    with pytest.raises(ConfigError, match="pseudo_labels.source: ema"):
        runs.config(runs.run_tree(scene_info, tmp_path, "stage1", pseudo_labels={"source": "ema"}))
    with pytest.raises(ConfigError, match="ema_momentum"):
        runs.config(runs.run_tree(scene_info, tmp_path, "stage1", pseudo_labels={"ema_momentum": 1.0}))
    with pytest.raises(ConfigError, match="mic.weight"):
        runs.config(runs.run_tree(scene_info, tmp_path, "source_only", mic={"weight": 1.0}))
