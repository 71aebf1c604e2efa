"""The inference benchmark harness (structure of its results, not speed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import Tensor, nn

from tufl.bench.inference_bench import format_benchmark, load_builder, run_inference_benchmark
from tufl.cli import main
from tufl.models.segmentor import INPUT_CONVENTIONS, Segmentor


class _Head(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(width, 19, 1))

    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.body(x)]


def build_models() -> dict[str, nn.Module]:
    return {
        "tiny": Segmentor(_Head(4), 19, INPUT_CONVENTIONS["imagenet_rgb"]),
        "small": Segmentor(_Head(8), 19, INPUT_CONVENTIONS["caffe_bgr"]),
    }


def test_rows_per_model_and_precision() -> None:
    models = build_models()
    models["small"].train()
    rows = run_inference_benchmark(models, height=16, width=24, device="cpu", amp=True, batch=2, warmup=1, repeats=4)
    assert [(r["model"], r["precision"]) for r in rows] == [
        ("tiny", "fp32"), ("tiny", "bf16"), ("small", "fp32"), ("small", "bf16"),
    ]
    # 3*4*9 + 4 + 4*19 + 19 weights and biases for width 4
    assert rows[0]["parameters"] == 3 * 4 * 9 + 4 + 4 * 19 + 19
    for row in rows:
        assert row["batch"] == 2 and (row["height"], row["width"]) == (16, 24)
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p90"]
        # fps is frames over the summed step time, i.e. batch / mean latency.
        assert row["fps"] == pytest.approx(2 * 1000.0 / row["latency_ms_mean"], rel=1e-9)
        assert row["peak_memory_mib"] is None
    assert models["small"].training  # mode restored
    table = format_benchmark(rows)
    assert len(table.splitlines()) == 2 + len(rows) and "bf16" in table


def test_command_line_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = main(["benchmark", "inference", "--builder", f"{__name__}:build_models", "--device", "cpu", "--height", "8",
                 "--width", "8", "--warmup", "0", "--repeats", "2", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert code == 0 and [(r["model"], r["precision"]) for r in rows] == [("tiny", "fp32"), ("small", "fp32")]
    assert "tiny" in capsys.readouterr().out


def test_builder_specification() -> None:
    assert load_builder("tufl.evaluation.metrics:default_class_names")(2) == ("class_0", "class_1")
    with pytest.raises(ValueError, match=r"package\.module:function"):
        load_builder("no_colon")
    with pytest.raises(ValueError, match="not a callable"):
        load_builder("tufl.data.labels:IGNORE_INDEX")
    with pytest.raises(SystemExit):
        main(["benchmark", "inference", "--builder", "no_colon"])
