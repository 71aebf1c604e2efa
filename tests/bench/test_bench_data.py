"""Throughput benchmark: a shrunken run produces one result per pipeline and worker count."""

from __future__ import annotations

from tufl.bench.data_bench import STANDARD_PIPELINES, format_results, main, measure_throughput


def test_shrunken_benchmark_runs_every_pipeline(tmp_path):
    results = measure_throughput(tmp_path, num_images=2, batches=2, batch_size=2, workers=(0,), size_divisor=16)
    assert [r.pipeline for r in results] == [p.name for p in STANDARD_PIPELINES]
    assert all(r.num_workers == 0 and r.batches == 2 and r.images_per_second > 0 for r in results)
    assert (tmp_path / "gta5" / "images" / "00002.png").is_file()
    table = format_results(results)
    assert table.count("\n") == len(results) + 1 and "| images/s |" in table


def test_command_line_entry_point(tmp_path, capsys):
    code = main(["--out-dir", str(tmp_path), "--images", "2", "--batches", "1", "--workers", "0",
                 "--size-divisor", "32"])
    out = capsys.readouterr().out
    assert code == 0 and "torch" in out and "cityscapes target pair" in out
    assert main(["--batches", "0"]) == 2


def test_tufl_benchmark_data_runs_this_benchmark(tmp_path, capsys):
    import argparse

    from tufl.bench import command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["data", "--out-dir", str(tmp_path), "--images", "2", "--batches", "1",
                              "--workers", "0", "--size-divisor", "32"])
    assert command.run(args) == 0
    assert "gta5 source" in capsys.readouterr().out
