"""ONNX export round trip through onnxruntime."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tufl.evaluation import export
from tufl.evaluation.export import export_onnx, verify_onnx
from tufl.models.segmentor import INPUT_CONVENTIONS, Segmentor

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

C = 5
# Max abs difference on logits of magnitude ~1 (ImageNet-normalised input); with
# the Caffe convention (no scaling) logits reach ~100 and the bound is relative.
TOLERANCE = 1e-4
RELATIVE_TOLERANCE = 1e-6


class _SmallNet(nn.Module):
    """Strided conv + BN + ReLU, an inner upsampling and a classifier: two logit maps."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(16, C, 1)
        self.aux = nn.Conv2d(8, C, 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        f1 = self.stem(x)
        f2 = F.interpolate(self.down(f1), size=f1.shape[-2:], mode="bilinear", align_corners=False)
        return [self.head(torch.cat([f1, f2], dim=1)), self.aux(f1)]


def _model(convention: str = "imagenet_rgb") -> Segmentor:
    torch.manual_seed(0)
    model = Segmentor(_SmallNet(), C, INPUT_CONVENTIONS[convention])
    for module in model.modules():  # non-trivial running statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1.0, 1.0)
            module.running_var.uniform_(0.5, 2.0)
    return model.train()


def _images(batch: int, height: int, width: int) -> Tensor:
    return torch.randint(0, 256, (batch, 3, height, width), generator=torch.Generator().manual_seed(height)).float()


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_export_round_trip_with_dynamic_shapes(tmp_path: Path, exporter: str) -> None:
    model = _model()
    stats = [b.clone() for b in model.buffers()]
    path = export_onnx(model, tmp_path / "model.onnx", height=32, width=48, exporter=exporter)  # type: ignore[arg-type]
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    # The model is left as it was: training mode, untouched BN statistics.
    assert model.training
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))
    for batch, height, width in [(1, 32, 48), (3, 40, 56), (2, 29, 37)]:
        diff = verify_onnx(model, path, _images(batch, height, width))
        assert diff < TOLERANCE, (exporter, batch, height, width, diff)


def test_export_includes_bgr_caffe_normalisation(tmp_path: Path) -> None:
    model = _model("caffe_bgr")
    path = export_onnx(model, tmp_path / "model.onnx", height=24, width=32)
    images = _images(2, 24, 40)
    with torch.no_grad():
        scale = model.eval()(images).main.abs().max().item()
    assert scale > 10.0
    assert verify_onnx(model, path, images) < RELATIVE_TOLERANCE * scale


def test_verify_detects_a_different_model(tmp_path: Path) -> None:
    model = _model()
    path = export_onnx(model, tmp_path / "model.onnx", height=16, width=16, exporter="torchscript")
    with torch.no_grad():
        model.net.head.bias.add_(1.0)
    assert verify_onnx(model, path, _images(1, 16, 16)) == pytest.approx(1.0, abs=1e-4)


def test_missing_onnx_packages_give_an_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        export.importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r"onnxscript.*tufl\[onnx\]"):
        export_onnx(_model(), tmp_path / "m.onnx", 16, 16, exporter="dynamo")
    assert not list(tmp_path.iterdir())
