"""Readers: exact pixel values, 16-bit SYNTHIA labels, and errors that name the file."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from fixtures import write_index_png, write_png16_rgb, write_rgb_png
from PIL import Image

from tufl.runtime.atomic import atomic_write_text
from tufl.data.io import (
    BadFileError,
    image_size,
    read_index_png,
    read_png_unchanged,
    read_rgb,
    read_synthia_label,
    resize_label,
)


def test_read_rgb_round_trip_and_grey_conversion(tmp_path):
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    write_rgb_png(tmp_path / "a.png", image)
    assert np.array_equal(read_rgb(tmp_path / "a.png"), image)
    assert image_size(tmp_path / "a.png") == (5, 4)
    grey = np.array([[0, 10], [200, 255]], dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    assert np.array_equal(read_rgb(tmp_path / "g.png"), np.repeat(grey[:, :, None], 3, axis=2))


def test_read_rgb_errors_name_the_file(tmp_path):
    with pytest.raises(BadFileError, match=r"missing\.png: file not found"):
        read_rgb(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(BadFileError, match=r"junk\.png: not a readable image"):
        read_rgb(tmp_path / "junk.png")
    write_rgb_png(tmp_path / "cut.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadFileError, match=r"cut\.png: corrupt or truncated"):
        read_rgb(tmp_path / "cut.png")
    Image.fromarray(np.zeros((2, 2), dtype=np.float32), mode="F").save(tmp_path / "float.tiff")
    with pytest.raises(BadFileError, match=r"float\.tiff: image mode 'F'"):
        read_rgb(tmp_path / "float.tiff")


def test_read_index_png_returns_palette_indices_not_colours(tmp_path):
    label = np.array([[7, 26, 255], [0, 33, 7]], dtype=np.uint8)
    write_index_png(tmp_path / "p.png", label, palette=True)
    write_index_png(tmp_path / "l.png", label, palette=False)
    assert Image.open(tmp_path / "p.png").mode == "P"
    assert np.array_equal(read_index_png(tmp_path / "p.png"), label)
    assert np.array_equal(read_index_png(tmp_path / "l.png"), label)
    write_rgb_png(tmp_path / "rgb.png", np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(BadFileError, match=r"rgb\.png: label image mode 'RGB'"):
        read_index_png(tmp_path / "rgb.png")


def test_synthia_16bit_labels_keep_all_bits_and_channel_order(tmp_path):
    red = np.array([[0, 3, 22], [21, 1, 10]], dtype=np.uint16)
    green = np.array([[256, 1000, 4095], [65535, 300, 512]], dtype=np.uint16)
    blue = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint16)
    write_png16_rgb(tmp_path / "s.png", np.stack([red, green, blue], axis=2))
    full = read_png_unchanged(tmp_path / "s.png")
    assert full.dtype == np.uint16
    assert np.array_equal(full[:, :, 0], red)
    assert np.array_equal(full[:, :, 1], green)  # values > 255 survive: a true 16-bit read
    assert np.array_equal(full[:, :, 2], blue)
    ids = read_synthia_label(tmp_path / "s.png")
    assert ids.dtype == np.uint16 and np.array_equal(ids, red)


def test_synthia_reader_errors(tmp_path, monkeypatch):
    with pytest.raises(BadFileError, match=r"none\.png: file not found"):
        read_synthia_label(tmp_path / "none.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    with pytest.raises(BadFileError, match=r"bad\.png: not a readable PNG"):
        read_synthia_label(tmp_path / "bad.png")
    write_index_png(tmp_path / "grey.png", np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(BadFileError, match=r"grey\.png: expected a 3-channel"):
        read_synthia_label(tmp_path / "grey.png")
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` fail
    with pytest.raises(ImportError, match=r"tufl\[synthia\]"):
        read_synthia_label(tmp_path / "bad.png")


def test_resize_label_is_nearest_neighbour():
    label = np.arange(32, dtype=np.uint8).reshape(4, 8)
    # Halving picks the pixel whose centre is nearest: source index floor((x + 0.5) * 2) = 2x + 1.
    assert np.array_equal(resize_label(label, (4, 2)), label[1::2, 1::2])
    doubled = resize_label(label, (16, 8))
    assert np.array_equal(doubled, np.repeat(np.repeat(label, 2, axis=0), 2, axis=1))


def test_atomic_write_text_replaces_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert os.listdir(target.parent) == ["out.json"]


def test_errors_re_raised_from_a_loader_worker_keep_their_message():
    from torch.utils.data import DataLoader, Dataset

    from tufl.data.io import BadFileError

    class Broken(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            raise BadFileError("/data/x.png", "corrupt or truncated image")

    with pytest.raises(BadFileError) as caught:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert (caught.value.path, caught.value.problem) == ("/data/x.png", "corrupt or truncated image")
    assert str(caught.value) == "/data/x.png: corrupt or truncated image"
