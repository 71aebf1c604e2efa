"""The loss benchmark and the slow reference it times."""

from __future__ import annotations

import json

import pytest
import torch

from tufl.bench.loss_bench import run_loss_benchmark
from tufl.bench.loss_reference import ReferenceTUFL
from tufl.cli import main


def _loss_command(argv: list[str], capsys) -> dict:
    """`tufl benchmark loss ARGV`: its exit status must be 0; returns the JSON it printed."""
    assert main(["benchmark", "loss", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_benchmark_reports_agreement_on_tiny_inputs():
    result = run_loss_benchmark(num_classes=5, height=8, width=12, batch=2, repeats=2, warmup=1)
    assert result["shape"] == [2, 5, 8, 12]
    for backend in ("torch", "fused"):  # the CPU default
        assert result[f"{backend}_agree"] is True
        assert result[f"{backend}_max_threshold_diff"] <= 1e-5
        assert result[f"{backend}_ms"] > 0 and result["reference_ms"] > 0
        assert result[f"{backend}_speedup"] == pytest.approx(result["reference_ms"] / result[f"{backend}_ms"])
    assert 0.0 <= result["pass_fraction"] <= 1.0


def test_benchmark_command_line_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    printed = _loss_command(["--classes", "3", "--height", "4", "--width", "6", "--repeats", "1", "--json", str(out)],
                            capsys)
    saved = json.loads(out.read_text())
    assert saved["shape"] == [2, 3, 4, 6] and saved["fused_agree"] is True and saved["torch_agree"] is True
    assert printed == saved


def test_benchmark_rejects_bad_sizes():
    with pytest.raises(ValueError, match="positive"):
        run_loss_benchmark(height=0)
    with pytest.raises(ValueError, match="backends must be some of"):
        run_loss_benchmark(backends=["graphs"])


def test_reference_literal_hand_example():
    # One pixel, two classes: P = softmax([log 3, 0]) = (0.75, 0.25); Q = (0.5, 0.5).
    # theta0 = 0.5, b = 1, d = 1: s = [0.75, 0.5], index floor(2 * 0.5) = 1 -> psi = 0.5; theta stays 0.5.
    # Value: -w * sum_c P_c log Q_c with w = (1 - 0.5)^2 = 0.25 -> 0.25 * log 2.
    z1 = torch.tensor([[[[float(torch.log(torch.tensor(3.0)))]], [[0.0]]]])
    z2 = torch.zeros(1, 2, 1, 1)
    ref = ReferenceTUFL(2, theta0=0.5, b=1.0, d=1.0)
    loss = ref(z1, z2)
    assert loss.item() == pytest.approx(0.25 * float(torch.log(torch.tensor(2.0))), rel=1e-6)
    assert ref.thresholds.tolist() == pytest.approx([0.5, 0.5])
    assert ref.last_pass_fraction.item() == 1.0


def test_benchmark_command_line_rejects_bad_values(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "loss", "--height", "0"])
    assert exit_info.value.code == 2 and "positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["benchmark", "loss", "--threads", "0"])
    assert "--threads must be >= 1" in capsys.readouterr().err


def test_benchmark_profile_writes_operator_tables(tmp_path, capsys):
    out = tmp_path / "profile.txt"
    result = _loss_command(["--classes", "3", "--height", "4", "--width", "6", "--repeats", "1", "--profile",
                            str(out)], capsys)
    text = out.read_text()
    assert text.startswith("== torch (") and "== fused (" in text and "aten::" in text
    counts = result["profile"]["fused"]
    # At least the per-pixel kernel's arithmetic and the threshold sort run in every step.
    assert counts["aten_ops_per_step"] >= 20
    assert "cuda_kernels_per_step" not in counts
