"""Hostile images: decompression bombs, images over the configured pixel limit, 16-bit colour
images and labels that cannot belong to their image are refused by name, before decoding where
the header tells, and skipped as bad samples by training and check-data."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import time
import tracemalloc
import warnings
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fixtures import write_gta5, write_index_png, write_png16_rgb, write_rgb_png
from PIL import Image

import runs
from tufl.cli import main
from tufl.cli.check_data import add_arguments as add_check_data_arguments, run as run_check_data
from tufl.data.cityscapes import CityscapesIdDataset
from tufl.data.io import BadFileError, ImageTooLargeError, read_index_png, read_rgb
from tufl.data.label_checks import label_size_tolerated
from tufl.data.registry import build_dataset, open_dataset
from tufl.data.config import DatasetConfig

BOMB_MESSAGE = "image is 100000 x 100000 = 10000000000 pixels, over data.max_image_pixels (64000000)"


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_bomb_png(path: Path, width: int = 100_000, height: int = 100_000, colour_type: int = 2) -> Path:
    """A valid PNG header declaring ``width`` x ``height`` 8-bit pixels, with a tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    body = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _check_data(capsys, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    add_check_data_arguments(parser)
    code = run_check_data(parser.parse_args([*argv, "--workers", "0"]))
    return code, capsys.readouterr().out


# --- the reader ------------------------------------------------------------------------------
def test_a_header_declaring_10_gigapixels_is_refused_without_decoding(tmp_path):
    bomb = write_bomb_png(tmp_path / "bomb.png")
    grey = write_bomb_png(tmp_path / "grey.png", colour_type=0)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    tracemalloc.start()
    start = time.perf_counter()
    try:
        for reader, path in ((read_rgb, bomb), (read_index_png, grey)):
            with pytest.raises(ImageTooLargeError) as caught:
                reader(path)
            assert str(caught.value).startswith(f"{path}: {BOMB_MESSAGE}; not decoded")
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 1 and peak < 8 * 2**20  # 30 GB were declared; nothing near it allocated
    assert Image.MAX_IMAGE_PIXELS == pillow_limit  # Pillow's own setting is left as it was


def test_the_limit_is_the_readers_not_pillows(tmp_path, monkeypatch):
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    write_rgb_png(tmp_path / "a.png", image)
    with pytest.raises(ImageTooLargeError, match=r"a\.png: image is 40 x 30 = 1200 pixels, over "
                                                 r"data.max_image_pixels \(1199\)"):
        read_rgb(tmp_path / "a.png", max_pixels=1199)
    assert np.array_equal(read_rgb(tmp_path / "a.png", max_pixels=1200), image)
    # Pillow's global limit far lower, its warning an error: the reader's limit still decides
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(read_rgb(tmp_path / "a.png"), image)


@pytest.mark.parametrize("raised", [Image.DecompressionBombError, Image.DecompressionBombWarning])
def test_pillows_bomb_check_firing_while_decoding_gives_the_same_error(tmp_path, monkeypatch, raised):
    write_rgb_png(tmp_path / "a.png", np.zeros((4, 6, 3), dtype=np.uint8))

    def load(self):
        raise raised("Image size (24 pixels) exceeds limit")

    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", load)
    with pytest.raises(ImageTooLargeError, match=r"a\.png: image is 6 x 4 pixels, refused by Pillow's"):
        read_rgb(tmp_path / "a.png")


def test_16_bit_colour_images_are_refused_by_name(tmp_path):
    write_png16_rgb(tmp_path / "deep.png", np.full((2, 3, 3), 40000, dtype=np.uint16))
    with pytest.raises(BadFileError, match=r"deep\.png: a 16-bit colour image is not an 8-bit colour"):
        read_rgb(tmp_path / "deep.png")


# --- datasets ---------------------------------------------------------------------------------
def test_a_bomb_in_a_dataset_is_a_named_bad_sample(tmp_path):
    written = write_gta5(tmp_path, n=3, mismatched=())
    write_bomb_png(written.image_paths[1])
    write_bomb_png(written.label_paths[2], colour_type=0)
    strict = build_dataset("gta5", str(tmp_path), "train", 19)
    with pytest.raises(ImageTooLargeError, match=re.escape(f"00002.png: {BOMB_MESSAGE}")):
        strict.load(1)
    with pytest.raises(ImageTooLargeError, match=re.escape(f"labels/00003.png: {BOMB_MESSAGE}")):
        strict.load(2)
    tolerant = build_dataset("gta5", str(tmp_path), "train", 19, skip_bad_files=True)
    assert np.array_equal(tolerant.load(1)[0], written.images[0])  # 1 and 2 bad: wraps to 0
    met = tolerant.take_skipped()
    assert [path for path, _ in met] == [str(written.image_paths[1]), str(written.label_paths[2])]
    assert all(problem.startswith(BOMB_MESSAGE) for _, problem in met)


def test_the_configured_limit_reaches_every_read(tmp_path, capsys):
    written = write_gta5(tmp_path, n=3, size=(64, 32), mismatched=())
    large = np.random.default_rng(1).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    write_rgb_png(written.image_paths[2], large)  # 8192 pixels; the others 2048
    write_index_png(written.label_paths[2], np.zeros((64, 128), dtype=np.uint8), palette=True)
    section = DatasetConfig("gta5", str(tmp_path), "train")
    ds = open_dataset(section, 19, skip_bad_files=False, max_image_pixels=4096)
    assert ds.max_image_pixels == 4096 and ds.load(0)[0].shape == (32, 64, 3)
    for read in (lambda: ds.load(2), lambda: ds.read_image(2), lambda: ds.read_label(2, full_resolution=True)):
        with pytest.raises(ImageTooLargeError, match=r"00003\.png: image is 128 x 64 = 8192 pixels, over "
                                                     r"data.max_image_pixels \(4096\)"):
            read()
    assert open_dataset(section, 19, skip_bad_files=False).load(2)[0].shape == (64, 128, 3)  # default limit
    code, out = _check_data(capsys, "--dataset", "gta5", "--root", str(tmp_path), "--max-image-pixels", "4096")
    assert code == 1 and "ERROR: too many pixels (2)" in out
    assert f"{written.image_paths[2]}: image is 128 x 64 = 8192 pixels" in out
    assert f"{written.label_paths[2]}: image is 128 x 64 = 8192 pixels" in out
    assert _check_data(capsys, "--dataset", "gta5", "--root", str(tmp_path))[0] == 0


def test_check_data_names_a_bomb_and_takes_the_limit_from_the_config(tmp_path, capsys):
    written = write_gta5(tmp_path / "gta", n=3, mismatched=())
    write_bomb_png(written.image_paths[0])
    code, out = _check_data(capsys, "--dataset", "gta5", "--root", str(tmp_path / "gta"))
    assert code == 1 and "ERROR: too many pixels (1)" in out
    assert f"{written.image_paths[0]}: {BOMB_MESSAGE}" in out
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"data": {"source": {"name": "gta5", "root": str(tmp_path / "gta")},
                                           "max_image_pixels": 1000}}))
    code, out = _check_data(capsys, "--config", str(config), "--section", "source")
    assert code == 1 and "ERROR: too many pixels (6)" in out  # 3 images and 3 labels of 64 x 32 > 1000
    assert "image is 64 x 32 = 2048 pixels, over data.max_image_pixels (1000)" in out


def test_a_label_that_cannot_belong_to_its_image_is_a_bad_sample(tmp_path, capsys):
    written = write_gta5(tmp_path, n=3, size=(128, 64), mismatched=())
    write_rgb_png(written.image_paths[0], np.zeros((1, 1, 3), dtype=np.uint8))  # a 1x1 image
    strict = build_dataset("gta5", str(tmp_path), "train", 19)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not resized with a warning: refused
        with pytest.raises(BadFileError, match=r"labels/00001\.png: label size 128x64 does not fit the image "
                                               r"size 1x1 of .*images/00001\.png"):
            strict.load(0)
        tolerant = build_dataset("gta5", str(tmp_path), "train", 19, skip_bad_files=True)
        assert tolerant.load(0)[1].shape == (64, 128)
    assert [path for path, _ in tolerant.take_skipped()] == [str(written.label_paths[0])]
    code, out = _check_data(capsys, "--dataset", "gta5", "--root", str(tmp_path))
    assert code == 1 and "ERROR: size mismatch (1)" in out and "label 128x64 vs image 1x1 (not the same" in out


def test_label_size_tolerance_is_bounded_to_the_known_mismatches():
    assert label_size_tolerated((64, 32), (32, 16))  # the same aspect ratio (the GTA5 fixture)
    assert label_size_tolerated((1914, 1052), (1914, 1049))  # a few pixels off
    assert label_size_tolerated((1920, 1080), (1280, 721))  # the aspect ratio within a pixel
    assert not label_size_tolerated((128, 64), (1, 1))
    assert not label_size_tolerated((100, 50), (100, 80))
    assert not label_size_tolerated((800, 400), (100, 50))  # 8x: too far to be the same picture


def test_16_bit_images_in_a_dataset_are_named_bad_samples(tmp_path, capsys):
    written = write_gta5(tmp_path, n=3, mismatched=())
    write_png16_rgb(written.image_paths[1], np.full((32, 64, 3), 1000, dtype=np.uint16))
    tolerant = build_dataset("gta5", str(tmp_path), "train", 19, skip_bad_files=True)
    assert np.array_equal(tolerant.load(1)[0], written.images[2])
    assert tolerant.take_skipped() == [(str(written.image_paths[1]),
                                        "a 16-bit colour image is not an 8-bit colour or grey image (convert it "
                                        "to 8 bits per channel)")]
    code, out = _check_data(capsys, "--dataset", "gta5", "--root", str(tmp_path))
    assert code == 1 and "ERROR: unreadable file (1)" in out and "00002.png: a 16-bit colour image" in out


class _WideIds(CityscapesIdDataset):
    """Labels whose raw values overflow the 256-entry table, or map to no train id."""

    name = "wide_ids"
    root_title = "wide"
    image_folder, label_folder = "images", "labels"

    @staticmethod
    def read_raw_label(path):
        return read_index_png(path).astype(np.uint16) + 300


def test_label_values_out_of_range_are_named_bad_samples_never_index_errors(tmp_path):
    written = write_gta5(tmp_path, n=2, mismatched=())
    with pytest.raises(BadFileError, match=r"labels/00001\.png: label value 3\d\d is outside the wide_ids label"):
        _WideIds(tmp_path).load(0)
    ds = build_dataset("gta5", str(tmp_path), "train", 19)
    ds.map_label = lambda raw: raw  # a broken mapping: raw Cityscapes ids 0..33 are no train ids
    assert written.labels[0].max() == 33
    with pytest.raises(BadFileError, match=r"labels/00001\.png: label values 19, 20, .*, 28, \.\.\. are not train "
                                           r"ids of 19 classes \(0\.\.18, 255 ignored\)"):
        ds.load(0)


# --- training ---------------------------------------------------------------------------------
def test_training_skips_hostile_images_as_named_counted_bad_samples(scene_info, tmp_path, capsys):
    root = tmp_path / "scenes"
    shutil.copytree(scene_info.root, root)
    info = replace(scene_info, root=root)
    images = sorted((info.source_root / "images").iterdir())
    bomb = write_bomb_png(images[3])
    tiny = images[5]
    write_rgb_png(tiny, np.zeros((1, 1, 3), dtype=np.uint8))  # its label stays 64x32
    deep = sorted((info.target_root / "leftImg8bit" / "train").rglob("*.png"))[2]
    write_png16_rgb(deep, np.full((32, 64, 3), 30000, dtype=np.uint16))
    tree = runs.run_tree(info, tmp_path / "run", "stage1", 8, data={"max_bad_fraction": 0.3})
    status = main(["train", "--config", str(runs.write_yaml(tree, tmp_path / "run.yaml"))])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "Traceback" not in captured.err
    assert captured.out.count(f"skipped a bad source sample: {bomb}: {BOMB_MESSAGE}") == 1
    assert captured.out.count(f"skipped a bad target sample: {deep}: a 16-bit colour image") == 1
    listed = json.loads((tmp_path / "run" / "bad_samples.json").read_text())
    assert listed["counts"] == {"source": 2, "target": 1}
    source = listed["files"]["source"]
    assert set(source) == {str(bomb), str(info.source_root / "labels" / tiny.name)}
    assert source[str(bomb)].startswith(BOMB_MESSAGE)
    assert "label size 64x32 does not fit the image size 1x1" in source[str(info.source_root / "labels" / tiny.name)]
