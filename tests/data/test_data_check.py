"""check-data: clean fixtures pass, each planted defect is found with a non-zero exit code."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from fixtures import (
    write_cityscapes,
    write_crosscity,
    write_gta5,
    write_index_png,
    write_synthia,
)

from tufl.cli.check_data import add_arguments as add_check_data_arguments, run as run_check_data
from tufl.data.check import check_dataset, format_report


def _run(capsys, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    add_check_data_arguments(parser)
    code = run_check_data(parser.parse_args([*argv, "--workers", "0"]))
    return code, capsys.readouterr().out


def test_clean_fixtures_pass(tmp_path, capsys):
    write_gta5(tmp_path / "gta", n=3, mismatched=())
    write_synthia(tmp_path / "syn", n=2)
    write_cityscapes(tmp_path / "cs", splits=("val",))
    write_crosscity(tmp_path / "cc")
    for argv in (
        ("--dataset", "gta5", "--root", str(tmp_path / "gta")),
        ("--dataset", "synthia", "--root", str(tmp_path / "syn")),
        ("--dataset", "cityscapes", "--root", str(tmp_path / "cs"), "--split", "val", "--num-classes", "16"),
        ("--dataset", "crosscity", "--root", str(tmp_path / "cc"), "--split", "Rome/test"),
    ):
        code, out = _run(capsys, *argv)
        assert code == 0, out
        assert "errors: 0" in out and "result: OK" in out


def test_gta5_size_mismatch_is_only_a_warning(tmp_path, capsys):
    write_gta5(tmp_path, n=3, mismatched=(2,))
    code, out = _run(capsys, "--dataset", "gta5", "--root", str(tmp_path))
    assert code == 0
    assert "WARNING: size mismatch (1)" in out and "00003.png: label 64x32 vs image 32x16" in out


def test_each_planted_defect_is_reported(tmp_path, capsys):
    gta = write_gta5(tmp_path / "gta", n=5, mismatched=())
    gta.label_paths[0].unlink()  # missing label
    gta.image_paths[1].write_bytes(b"\x89PNG\r\n\x1a\nbroken")  # unreadable image
    write_index_png(tmp_path / "gta" / "labels" / "99999.png", np.zeros((4, 4), dtype=np.uint8))  # orphan
    write_index_png(gta.label_paths[2], np.full((32, 64), 40, dtype=np.uint8), palette=True)  # unknown id
    code, out = _run(capsys, "--dataset", "gta5", "--root", str(tmp_path / "gta"))
    assert code == 1 and "result: FAILED (4 errors)" in out
    assert "ERROR: missing label (1)" in out and "labels/00001.png" in out
    assert "ERROR: unreadable file (1)" in out and "images/00002.png" in out
    assert "ERROR: orphan label (1)" in out and "labels/99999.png" in out
    assert "ERROR: unknown label value (1)" in out and "labels/00003.png: values 40 are not gta5" in out


def test_size_mismatch_outside_gta5_is_an_error(tmp_path, capsys):
    written = write_cityscapes(tmp_path, splits=("val",), cities=("aachen",), n_per_city=2)
    write_index_png(written["val"].label_paths[1], np.full((16, 16), 7, dtype=np.uint8))
    code, out = _run(capsys, "--dataset", "cityscapes", "--root", str(tmp_path), "--split", "val")
    assert code == 1 and "ERROR: size mismatch (1)" in out and "label 16x16 vs image 64x32" in out


def test_corrupt_synthia_label_and_missing_root(tmp_path, capsys):
    written = write_synthia(tmp_path / "syn", n=2)
    written.label_paths[1].write_bytes(b"garbage")
    code, out = _run(capsys, "--dataset", "synthia", "--root", str(tmp_path / "syn"))
    assert code == 1 and "ERROR: unreadable file (1)" in out and "GT/LABELS/0000001.png" in out
    code, out = _run(capsys, "--dataset", "gta5", "--root", str(tmp_path / "nowhere"))
    assert code == 1 and "ERROR: layout" in out and "images/, labels/" in out
    assert _run(capsys, "--dataset", "crosscity", "--root", str(tmp_path))[0] == 2  # needs --split


def test_class_pixel_shares_are_reported(tmp_path):
    written = write_cityscapes(tmp_path, splits=("val",), cities=("aachen",), n_per_city=1, size=(8, 4))
    label = np.array([[7] * 8, [7] * 8, [23] * 8, [0] * 8], dtype=np.uint8)  # road 16, sky 8, void 8
    write_index_png(written["val"].label_paths[0], label)
    report = check_dataset("cityscapes", str(tmp_path), "val", 19)
    assert report.ok and report.num_images == report.num_labels == 1
    expected = [0] * 19
    expected[0], expected[10] = 16, 8
    assert report.class_pixels == expected and report.ignored_pixels == 8
    text = format_report(report)
    assert "road" in text and "50.00%" in text and "25.00%" in text


@pytest.mark.parametrize("workers", [2])
def test_parallel_check_finds_the_same_issues(tmp_path, workers):
    gta = write_gta5(tmp_path, n=6, mismatched=(4,))
    gta.image_paths[3].write_bytes(b"junk")
    serial = check_dataset("gta5", str(tmp_path), "train", 19, workers=0)
    parallel = check_dataset("gta5", str(tmp_path), "train", 19, workers=workers)
    assert serial.issues == parallel.issues and serial.class_pixels == parallel.class_pixels
    assert [i.kind for i in parallel.issues] == ["unreadable file", "size mismatch"]
