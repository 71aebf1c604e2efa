"""CUDA checks: the same results as on CPU, and mixed-precision training (skipped without a GPU)."""

from __future__ import annotations

import json

import pytest
import torch

import runs
from tufl.data.factory import build_dataset
from tufl.data.loader import eval_loader
from tufl.data.samples import EvalSamples
from tufl.evaluation.evaluate import evaluate
from tufl.losses import TUFL
from tufl.losses.backends import fused, triton
from tufl.mixing.classmix import classmix
from tufl.models.build import model_from_checkpoint
from tufl.train import checkpoint as ckpt
from tufl.train.engine import Trainer, train
from tufl.train.run_log import read_metrics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _logit_pair(seed: int = 0, shape=(2, 19, 24, 40)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    weak = 3 * torch.randn(shape, generator=g, dtype=torch.float64)
    strong = weak + torch.randn(shape, generator=g, dtype=torch.float64)
    valid = torch.rand(shape[0], *shape[2:], generator=g) > 0.1
    return weak, strong, valid


def _tufl_step(device: torch.device, dtype: torch.dtype, steps: int = 3, backend: str = "auto"):
    """Loss, strong-view gradient and thresholds after ``steps`` calls on ``device``."""
    loss_fn = TUFL(19, backend=backend).to(device)
    for seed in range(steps):
        weak, strong, valid = _logit_pair(seed)
        weak = weak.to(device, dtype)
        strong = strong.to(device, dtype).requires_grad_(True)
        loss = loss_fn(weak, strong, valid.to(device))
    loss.backward()
    return loss.detach().cpu().double(), strong.grad.cpu().double(), loss_fn.thresholds.cpu().double()


@pytest.mark.parametrize("backend", ["torch", "fused", "triton"])
def test_tufl_on_cuda_matches_cpu_float64(backend):
    cpu = _tufl_step(torch.device("cpu"), torch.float64, backend="torch")
    gpu = _tufl_step(CUDA, torch.float64, backend=backend)  # triton: float64 goes to the fused backend
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", ["torch", "fused", "triton"])
def test_tufl_on_cuda_matches_cpu_float32(backend):
    cpu = _tufl_step(torch.device("cpu"), torch.float32, backend="torch")
    gpu = _tufl_step(CUDA, torch.float32, backend=backend)
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "num_classes, gamma, focal_type, weighted, detach",
    [(19, 2.0, 1, False, False), (5, 0.0, 1, False, False), (33, 0.5, 2, True, False),
     (19, 3.0, 2, True, True), (2, 2.0, 2, False, False), (64, 1.5, 1, True, False)],
)
def test_triton_kernel_matches_the_fused_backend(num_classes, gamma, focal_type, weighted, detach):
    """On CUDA the fused loss runs Triton kernels (the backward recomputes from the logits).
    They give the torch operations' loss, confidence, pseudo-class (first maximum under
    exact ties, in range for NaN pixels) and gradients for an arbitrary upstream gradient."""
    pytest.importorskip("triton")
    g = torch.Generator().manual_seed(num_classes)
    shape = (2, num_classes, 37, 53)  # pixel count not a multiple of any block
    weak = 3 * torch.randn(shape, generator=g)
    strong = weak + torch.randn(shape, generator=g)
    weak[0, :, 3, 4] = 1.25  # an exact tie of all classes
    weak[1, :, 5, 6] = float("nan")
    upstream = torch.rand(2, 37, 53, generator=g)
    lam = (torch.rand(num_classes, generator=g) + 0.5).to(CUDA) if weighted else None
    assert triton.kernels_for(CUDA, torch.float32, num_classes) is not None  # the kernels run here

    def run(terms):
        w, s = weak.to(CUDA).requires_grad_(True), strong.to(CUDA).requires_grad_(True)
        loss, conf, cls = terms(w, s, gamma, focal_type, lam, detach)
        (loss * upstream.to(CUDA)).sum().backward()
        return loss, conf, cls, w.grad, s.grad

    kernel = run(triton.triton_pixel_terms)
    assert triton.STATUS.failure is None  # the kernels ran, no fallback
    torch_ops = run(fused.fused_pixel_terms)
    finite = torch.ones(2, 37, 53, dtype=torch.bool)
    finite[1, 5, 6] = False
    assert torch.equal(kernel[2][finite], torch_ops[2][finite]) and kernel[2][0, 3, 4] == 0
    assert 0 <= int(kernel[2][1, 5, 6]) < num_classes
    for a, b in zip(kernel[:2] + kernel[3:], torch_ops[:2] + torch_ops[3:]):
        if a.dim() == 4:
            a, b = a.movedim(1, -1), b.movedim(1, -1)
        a, b = a.cpu()[finite], b.cpu()[finite]
        tolerance = 2e-3 if gamma < 1 else 1e-4  # gamma < 1: the slope is infinite where Q_k = m
        assert float((a - b).abs().max()) <= tolerance * float(b.abs().max())


def test_tufl_under_bf16_autocast_is_computed_in_float32():
    weak, strong, valid = _logit_pair()
    reference = TUFL(19)(weak.float(), strong.float(), valid)
    loss_fn = TUFL(19).to(CUDA)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = loss_fn(weak.float().to(CUDA), strong.float().to(CUDA), valid.to(CUDA))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.cpu(), reference, rtol=1e-4, atol=1e-6)


def test_classmix_on_cuda_keeps_its_invariants():
    g = torch.Generator(device=CUDA).manual_seed(0)
    source = torch.randint(0, 100, (4, 3, 32, 48), dtype=torch.uint8, device=CUDA)
    target = torch.randint(150, 256, (4, 3, 32, 48), dtype=torch.uint8, device=CUDA)
    labels = torch.randint(0, 19, (4, 32, 48), device=CUDA)
    pseudo = torch.randint(0, 19, (4, 32, 48), device=CUDA)
    out = classmix(source, labels, target, pseudo, 19, g)
    assert out.images.device == source.device
    mask = out.mask[:, None].expand_as(source)
    assert torch.equal(out.images[mask], source[mask]) and torch.equal(out.images[~mask], target[~mask])
    assert torch.equal(out.labels[out.mask], labels[out.mask]) and torch.equal(out.labels[~out.mask], pseudo[~out.mask])
    for b in range(4):  # half of each sample's own classes, rounded up
        present = labels[b].unique().numel()
        assert int(out.selected[b].sum()) == (present + 1) // 2


@pytest.mark.parametrize("amp_dtype", ["bfloat16", "float16"])
def test_stage1_and_stage2_train_on_cuda_with_mixed_precision(amp_dtype, scene_info, source_only_run, tmp_path,
                                                              monkeypatch):
    if amp_dtype == "float16":  # the fp16 + loss-scaling path, also on GPUs that have bf16
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    pretrained = {"pretrained": str(source_only_run / "checkpoint_last.pt")}
    for mode in ("stage1", "stage2"):
        out = tmp_path / mode
        tree = runs.run_tree(scene_info, out, mode, iters=8, model=pretrained,
                             experiment={"device": "cuda"}, train={"amp": True, "channels_last": True})
        train(runs.config(tree))
        info = json.loads((out / "run_info.json").read_text())
        assert info["amp"] == amp_dtype
        records = read_metrics(out, "train")
        assert len(records) == 8 and all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
        state = ckpt.load_checkpoint(out / "checkpoint_last.pt")
        assert state["iteration"] == 8
        assert all(t.device.type == "cpu" for t in state["model"].values())  # loadable anywhere
        if amp_dtype == "float16":
            assert state["scaler"]["scale"] > 0
        thresholds = [v for k, v in state["losses"].items() if k.endswith("thresholds")]
        assert thresholds and all(not torch.all(t == 0.8) for t in thresholds)


class _Crash(Exception):
    """Stands in for a killed process."""


def test_resume_on_cuda_matches_an_uninterrupted_run(scene_info, source_only_run, tmp_path, monkeypatch):
    def run_dir(name: str, resume: bool = False):
        tree = runs.run_tree(scene_info, tmp_path / name, "stage2", iters=6,
                             model={"pretrained": str(source_only_run / "checkpoint_last.pt")},
                             experiment={"device": "cuda"},
                             train={"checkpoint_every": 3, "amp": False, "deterministic": True})
        train(runs.config(tree), resume=resume)

    run_dir("straight")
    run_dir("straight_again")  # run-to-run spread of the CUDA kernels that stay non-deterministic
    original = Trainer.train_step

    def crash_after_checkpoint(self):
        if self.iteration == 4:
            raise _Crash
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", crash_after_checkpoint)
    with pytest.raises(_Crash):
        run_dir("killed")
    monkeypatch.setattr(Trainer, "train_step", original)
    run_dir("killed", resume=True)
    a, b, resumed = (ckpt.load_checkpoint(tmp_path / name / "checkpoint_last.pt")
                     for name in ("straight", "straight_again", "killed"))
    assert resumed["iteration"] == 6 and resumed["data"] == a["data"]
    for group in ("model", "losses"):
        for name, value in a[group].items():
            if value.is_floating_point():
                spread = float((b[group][name] - value).abs().max())
                error = float((resumed[group][name] - value).abs().max())
                assert error <= 10 * spread + 1e-6, f"{group}.{name}: resumed differs by {error}, runs by {spread}"


def test_evaluation_on_cuda_matches_cpu(scene_info, source_only_run):
    model, _ = model_from_checkpoint(str(source_only_run / "checkpoint_last.pt"))
    samples = EvalSamples(build_dataset("cityscapes", str(scene_info.target_root), "val", 19))
    loader = eval_loader(samples, 2, 0, 0, 1)
    cpu = evaluate(model, loader, 19, "cpu", progress=False)
    gpu = evaluate(model, loader, 19, CUDA, progress=False)
    # convolution algorithms differ between devices: allow a few pixels to flip
    assert abs(cpu.miou - gpu.miou) < 0.005
    amp = evaluate(model, loader, 19, CUDA, amp=True, scales=(0.75, 1.0), flip=True, progress=False)
    assert 0.0 <= amp.miou <= 1.0 and amp.settings["amp"] is True
