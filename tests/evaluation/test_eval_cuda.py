"""Evaluation on a GPU equals the CPU's."""

from __future__ import annotations

import pytest
import torch

from tufl.data.registry import build_dataset
from tufl.data.loader import eval_loader
from tufl.data.samples import EvalSamples
from tufl.evaluation.evaluate import evaluate
from tufl.evaluation.options import InferenceOptions
from tufl.models.build import model_from_checkpoint

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


def test_evaluation_on_cuda_matches_cpu(scene_info, source_only_run):
    model, _ = model_from_checkpoint(str(source_only_run / "checkpoint_last.pt"))
    samples = EvalSamples(build_dataset("cityscapes", str(scene_info.target_root), "val", 19))
    loader = eval_loader(samples, 2, 0, 0, 1)
    cpu = evaluate(model, loader, 19, "cpu", progress=False)
    gpu = evaluate(model, loader, 19, CUDA, progress=False)
    # convolution algorithms differ between devices: allow a few pixels to flip
    assert abs(cpu.miou - gpu.miou) < 0.005
    amp = evaluate(model, loader, 19, CUDA, InferenceOptions(amp=True, scales=(0.75, 1.0), flip=True), progress=False)
    assert 0.0 <= amp.miou <= 1.0 and amp.settings["amp"] is True
