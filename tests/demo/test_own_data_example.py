"""The own-data example of docs/own-data.md: the layouts, the class file's encoding, check-data."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tufl.cli import demo as demo_command
from tufl.cli.check_data import add_arguments, run
from tufl.data.class_set import load_class_set
from tufl.demo.own_data_example import SIMULATOR_VALUES, simulator_labels, write_own_data_example

CLASSES = Path(__file__).resolve().parents[2] / "configs/own_data/classes/simulator_6_classes.yaml"


def test_the_simulator_encoding_is_the_class_file_s():
    ids = np.array([[7, 8, 26, 23], [0, 255, 33, 21]], dtype=np.uint8)  # road sidewalk car sky / void void bike veg
    assert simulator_labels(ids).tolist() == [[1, 2, 11, 8], [0, 0, 14, 6]]
    class_set = load_class_set(CLASSES)
    assert class_set.names == ("flat", "structure", "nature", "sky", "person", "vehicle")
    assert set(SIMULATOR_VALUES.values()) | {0, 255} == set(class_set.known_values)


def test_the_example_has_the_documented_layout_and_passes_check_data(tmp_path, capsys):
    example = write_own_data_example(tmp_path / "ex", size=(64, 32), n_simulator=6, n_frames=5, n_labelled=4,
                                     workers=1, video=False)
    root = example.root
    assert (example.simulator_images, example.frames, example.labelled_frames, example.video) == (6, 5, 4, None)
    images = sorted((root / "simulator" / "images").glob("*.png"))
    assert [p.name for p in images] == [f"sim_{k:05d}.png" for k in range(1, 7)]
    known = set(load_class_set(CLASSES).known_values)
    for image in images:
        label = np.asarray(Image.open(root / "simulator" / "labels" / image.name))
        assert label.shape == (32, 64) and set(np.unique(label)) <= known
    assert len(list((root / "dashcam" / "frames").glob("frame_*.jpg"))) == 5
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--dataset", "folder", "--root", str(root / "simulator"), "--images", "images",
                                  "--labels", "labels", "--classes", str(CLASSES), "--workers", "0"])) == 0
    assert "result: OK" in capsys.readouterr().out


def test_the_command_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "used.txt").write_text("x")
    parser = argparse.ArgumentParser()
    demo_command.add_arguments(parser)
    assert demo_command.run(parser.parse_args(["--own-data-example", str(tmp_path)])) == 2
    assert "is not empty" in capsys.readouterr().err


def test_the_video_has_the_labelled_frames(tmp_path):
    av = pytest.importorskip("av")
    example = write_own_data_example(tmp_path / "ex", size=(64, 32), n_simulator=2, n_frames=2, n_labelled=5,
                                     workers=1)
    with av.open(str(example.video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5
