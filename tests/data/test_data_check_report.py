"""check-data's report of your own data: what the header and counts say, class-file errors as
their own kind, one line per problem naming each path once."""

from __future__ import annotations

import argparse

import pytest
from fixtures import write_gta5
from own_data import label_grid, write_class_file, write_label, write_rgb

from tufl.cli.check_data import add_arguments, run
from tufl.data.check import check_dataset

SIZE = (8, 4)
SIX = [{"value": v, "train_id": v, "name": n} for v, n in enumerate(("a", "b", "c", "d", "e", "f"))]


def _own_data(root, n_images: int = 3, n_labels: int = 3) -> None:
    """``images/f<i>.jpg`` with ``labels/f<i>.png`` (values 0 and 1) for the first ``n_labels``."""
    for i in range(n_images):
        write_rgb(root / "images" / f"f{i}.jpg", SIZE, seed=i)
        if i < n_labels:
            write_label(root / "labels" / f"f{i}.png", label_grid([0, 1], SIZE))


def _check_data(capsys, *argv: str) -> tuple[int, list[str]]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    status = run(parser.parse_args([*argv, "--workers", "0"]))
    return status, capsys.readouterr().out.splitlines()  # the report (progress lines go to stderr)


def _folder_args(root, classes, labels: str = "labels") -> list[str]:
    return ["--dataset", "folder", "--root", str(root), "--images", "images", "--labels", labels,
            "--classes", str(classes)]


def test_header_counts_the_class_file_s_classes_and_the_label_files_found(tmp_path, capsys):
    _own_data(tmp_path / "ds", n_images=3, n_labels=2)
    classes = write_class_file(tmp_path / "six.yaml", classes=SIX, ignore=[255])
    status, lines = _check_data(capsys, *_folder_args(tmp_path / "ds", classes))
    assert status == 1
    assert lines[:2] == [f"check-data: folder at {tmp_path / 'ds'} (6 classes)",
                         "images: 3, labels: 2 of 3 images, errors: 1, warnings: 0"]
    assert "ERROR: missing label (1)" in lines and lines[-1] == "result: FAILED (1 error)"
    report = check_dataset("folder", str(tmp_path / "ds"), "train", 19, classes=str(classes),
                           own_data={"images": ("images",), "labels": "labels"})
    assert (report.num_images, report.num_labels, report.num_classes) == (3, 2, 6)


def test_unlabelled_images_say_so(tmp_path, capsys):
    _own_data(tmp_path / "ds", n_images=2, n_labels=0)
    status, lines = _check_data(capsys, "--dataset", "images", "--root", str(tmp_path / "ds"))
    assert status == 0
    assert lines[:2] == [f"check-data: images at {tmp_path / 'ds'} (unlabelled)",
                         "images: 2 (unlabelled), errors: 0, warnings: 0"]
    # no class count or class file is mentioned (the folder's path, pytest-<n>, may hold any digits)
    text = [line.replace(str(tmp_path), "DIR") for line in lines]
    assert lines[-1] == "result: OK" and not any("19" in line or "class" in line for line in text)


def test_a_bad_class_file_is_its_own_kind_naming_the_file(tmp_path, capsys):
    _own_data(tmp_path / "ds")
    classes = write_class_file(tmp_path / "bad.yaml", ignore=[], classes=[
        {"value": 0, "train_id": 0, "name": "a"}, {"value": 1, "train_id": 1}])
    status, lines = _check_data(capsys, *_folder_args(tmp_path / "ds", classes))
    assert status == 1
    assert lines == [f"check-data: folder at {tmp_path / 'ds'}",
                     "errors: 1, warnings: 0",
                     "ERROR: class file (1)",
                     f"  {classes}: train id 1 has no name: give one of its entries (classes entry 2) a name",
                     "",
                     "result: FAILED (1 error)"]
    gta = tmp_path / "gta"
    write_gta5(gta, n=1, mismatched=())
    plain = write_class_file(tmp_path / "plain.yaml", classes=SIX[:2], ignore=[])
    report = check_dataset("gta5", str(gta), "train", 19, classes=str(plain))
    assert [(i.kind, i.path) for i in report.errors] == [("class file", str(plain))]
    assert report.errors[0].detail.startswith("has no from_source section, so it cannot map 19-class gta5 labels "
                                              "to its 2 classes")


@pytest.mark.parametrize(("what", "line"), [
    ("labels", "{root}/labelz: label folder not found (labels 'labelz', relative to the root)"),
    ("images", "{root}/imagez: image folder not found (images 'imagez', relative to the root)"),
    ("empty", "{root}/empty: no images found (.png, .jpg, .jpeg)"),
    ("root", "{root}/nowhere: root folder of the folder dataset not found"),
])
def test_layout_errors_name_each_path_once(tmp_path, capsys, what, line):
    root = tmp_path / "ds"
    _own_data(root)
    (root / "empty").mkdir()
    classes = write_class_file(tmp_path / "c.yaml", classes=SIX[:2], ignore=[])
    args = {"labels": _folder_args(root, classes, labels="labelz"),
            "images": [*_folder_args(root, classes), "--images", "imagez"],
            "empty": [*_folder_args(root, classes), "--images", "empty"],
            "root": _folder_args(root / "nowhere", classes)}[what]
    status, lines = _check_data(capsys, *args)
    assert status == 1
    assert lines[2:4] == ["ERROR: layout (1)", "  " + line.format(root=root)]


def test_layout_error_of_an_official_layout_names_the_root_once(tmp_path, capsys):
    status, lines = _check_data(capsys, "--dataset", "gta5", "--root", str(tmp_path / "nowhere"))
    assert status == 1
    assert lines[:4] == [f"check-data: gta5 at {tmp_path / 'nowhere'} (split train, 19 classes)",
                         "errors: 1, warnings: 0", "ERROR: layout (1)",
                         f"  {tmp_path / 'nowhere'}: GTA5 root not found (expected a folder with images/, labels/)"]
