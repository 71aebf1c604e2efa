"""Throughput benchmark: a shrunken run produces one result per pipeline, variant and worker count."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

from tufl.bench.data_bench import (
    STANDARD_PIPELINES,
    VARIANTS,
    ThroughputResult,
    _make_samples,
    format_results,
    format_side_by_side,
    measure_throughput,
    shrink,
)
from tufl.cli import main
from tufl.data.device_views import finish_target_batch


def test_shrunken_benchmark_runs_every_pipeline(tmp_path):
    results = measure_throughput(tmp_path, num_images=2, batches=2, batch_size=2, workers=(0,), size_divisor=16)
    assert [r.pipeline for r in results] == [p.name for p in STANDARD_PIPELINES]
    assert all(r.num_workers == 0 and r.batches == 2 and r.images_per_second > 0 for r in results)
    assert (tmp_path / "gta5" / "images" / "00002.png").is_file()
    table = format_results(results)
    assert table.count("\n") == len(results) + 1 and "| images/s |" in table


def test_command_line_entry_point(tmp_path, capsys):
    code = main(["benchmark", "data", "--out-dir", str(tmp_path), "--images", "2", "--batches", "1", "--workers",
                 "0", "--size-divisor", "32"])
    out = capsys.readouterr().out
    assert code == 0 and "torch" in out and "cityscapes target pair" in out
    assert "prepared copy (npy), worker part only" in out and "new/old" in out  # both variants by default
    assert main(["benchmark", "data", "--batches", "0"]) == 2


def test_tufl_benchmark_data_runs_this_benchmark(tmp_path, capsys):
    import argparse

    from tufl.cli import benchmark as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["data", "--out-dir", str(tmp_path), "--images", "2", "--batches", "1",
                              "--workers", "0", "--size-divisor", "32"])
    assert command.run(args) == 0
    assert "gta5 source" in capsys.readouterr().out


def test_rates_per_core():
    # 10 batches of 2 in 2 s: 10 images/s; two workers are two cores, no workers is one
    assert ThroughputResult("p", 2, 2, 10, 2.0).images_per_second_per_core == pytest.approx(5.0)
    assert ThroughputResult("p", 0, 2, 10, 2.0).images_per_second_per_core == pytest.approx(10.0)


def test_side_by_side_rows_and_the_prepared_pipeline_gives_the_original_samples(tmp_path):
    pipelines = [p for p in STANDARD_PIPELINES if p.dataset in ("gta5", "cityscapes")]
    results = measure_throughput(tmp_path, num_images=2, batches=2, batch_size=2, workers=(0,), size_divisor=32,
                                 pipelines=pipelines, variants=VARIANTS, device="cpu")
    assert [(r.pipeline, r.variant) for r in results] == [(p.name, v) for p in pipelines for v in VARIANTS]
    device_part = {(r.pipeline, r.variant): r.device_seconds_per_batch for r in results}
    assert device_part[(pipelines[1].name, "prepared")] > 0  # the target pair's strong view, timed apart
    assert [v for k, v in device_part.items() if k != (pipelines[1].name, "prepared")] == [None] * 3
    table = format_side_by_side(results).splitlines()
    assert len(table) == 2 + len(pipelines) and all(line.count("x |") == 2 for line in table[2:])
    assert len(list((tmp_path / "prepared").glob("*/manifest.json"))) == 2

    # same keys, same samples: the copy is lossless, and the strong view built from the
    # worker's draws on the (CPU) device equals the one the worker built itself
    for spec in pipelines:
        spec = shrink(spec, 32)
        root = tmp_path / spec.dataset
        old = _make_samples(spec, root)
        new = _make_samples(spec, root, "prepared", tmp_path / "prepared")
        for key in ((0, 11), (1, 12345)):
            a, b = old[key], new[key]
            if spec.kind == "source":
                assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
                continue
            assert "strong" not in b and torch.equal(a["weak"], b["weak"]) and torch.equal(a["theta"], b["theta"])
            strong = finish_target_batch(default_collate([b]), new.cfg)["strong"][0]
            assert torch.equal(strong, a["strong"])
