"""folder / images datasets: pairing rules, label encodings, bad input, check-data."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from own_data import FIVE_EXPECTED, label_grid, write_class_file, write_label, write_rgb

from tufl.cli.check_data import add_arguments as add_check_data_arguments, run as run_check_data
from tufl.data.check import check_dataset, format_report
from tufl.data.registry import build_dataset
from tufl.data.io import BadFileError, DataError, LayoutError
from tufl.data.samples import TargetPairs
from tufl.data.views import TargetViewConfig

SIZE = (6, 4)
EIGHT_BIT_VALUES = [10, 11, 20, 30, 40, 0, 255]


def _expected(raw: np.ndarray) -> np.ndarray:
    return np.vectorize(FIVE_EXPECTED.__getitem__)(raw).astype(np.uint8)


def _folder(tmp_path, kinds=("grey", "palette", "16bit")):
    """images/<kind>/x.jpg with labels/<kind>/x.png in each label encoding."""
    raws = {}
    for i, kind in enumerate(kinds):
        values = EIGHT_BIT_VALUES + ([300] if kind == "16bit" else [])
        raw = label_grid(values[i:] + values[:i], SIZE)
        write_rgb(tmp_path / "images" / kind / "x.jpg", SIZE, seed=i)
        write_label(tmp_path / "labels" / kind / "x.png", raw, kind)
        raws[f"images/{kind}/x.jpg"] = raw
    return raws


def _build(tmp_path, name="folder", num_classes=None, **kw):
    kw.setdefault("classes", str(write_class_file(tmp_path / "classes.yaml")))
    return build_dataset(name, str(tmp_path), "train", num_classes, **kw)


def test_grey_palette_and_16bit_labels_read_as_train_ids(tmp_path):
    raws = _folder(tmp_path)
    ds = _build(tmp_path, images=("images",), labels="labels")
    assert ds.num_classes == 5 and ds.class_set.names == ("road", "vehicle", "person", "sky", "building")
    assert [s.name for s in ds.samples] == sorted(raws)
    for i, sample in enumerate(ds.samples):
        image, label = ds.load(i)
        assert image.shape == (4, 6, 3)
        np.testing.assert_array_equal(label, _expected(raws[sample.name]))
    # hand-checked corner pixels of the 16-bit map (values rotated by 2: 20 first -> vehicle)
    sixteen = ds.samples.index(next(s for s in ds.samples if "16bit" in s.name))
    assert ds.load(sixteen)[1][0, :3].tolist() == [1, 2, 3]
    assert ds.class_set.palette()[1].tolist() == [0, 0, 142]


def test_stem_rule_with_root_default_skips_the_label_folder(tmp_path):
    write_rgb(tmp_path / "a" / "f1.png", SIZE)
    write_rgb(tmp_path / "b" / "f2.jpeg", SIZE)
    write_label(tmp_path / "gt" / "a" / "f1.png", label_grid([10], SIZE))
    write_label(tmp_path / "gt" / "b" / "f2.png", label_grid([20], SIZE))
    ds = _build(tmp_path, labels="gt")
    assert [s.name for s in ds.samples] == ["a/f1.png", "b/f2.jpeg"]  # gt/*.png are not images
    assert ds.load(1)[1].max() == 1


def test_suffix_rule_and_recursive_glob(tmp_path):
    for city, k in (("x", 0), ("y/z", 1)):
        write_rgb(tmp_path / "leftImg8bit" / city / f"c_{k}_leftImg8bit.png", SIZE, seed=k)
        write_label(tmp_path / "gtFine" / city / f"c_{k}_gtFine_labelIds.png", label_grid([30 + 10 * k], SIZE))
    ds = _build(tmp_path, images=("leftImg8bit/**/*_leftImg8bit.png",), labels="gtFine",
                label_rule="_leftImg8bit.png->_gtFine_labelIds.png")
    assert [s.label.split("gtFine/")[1] for s in ds.samples] == ["x/c_0_gtFine_labelIds.png",
                                                                   "y/z/c_1_gtFine_labelIds.png"]
    assert [int(ds.load(i)[1][0, 0]) for i in range(2)] == [2, 3]


def test_list_file_with_two_and_one_columns(tmp_path):
    write_rgb(tmp_path / "img" / "p.jpg", SIZE)
    write_label(tmp_path / "ann" / "q.png", label_grid([40], SIZE), "palette")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("# image label\nimg/p.jpg ann/q.png\n")
    ds = _build(tmp_path, list_file=str(pairs))
    assert ds.has_labels and int(ds.load(0)[1][0, 0]) == 3
    only = tmp_path / "only.txt"
    only.write_text("img/p.jpg\n")
    unlabelled = _build(tmp_path, list_file=str(only))
    assert not unlabelled.has_labels and unlabelled.load(0)[1] is None


def test_images_of_mixed_sizes_make_equal_target_views(tmp_path):
    write_rgb(tmp_path / "cam" / "a.jpg", (40, 30), seed=1)
    write_rgb(tmp_path / "cam" / "deep" / "b.png", (24, 50), seed=2)
    native = build_dataset("images", str(tmp_path), "train", 5, images=("cam/**/*",))
    assert [native.load(i)[0].shape for i in range(2)] == [(30, 40, 3), (50, 24, 3)]
    resized = build_dataset("images", str(tmp_path), "train", 5, images=("cam",), resize=(16, 8))
    assert {resized.load(i)[0].shape for i in range(2)} == {(8, 16, 3)}
    pairs = TargetPairs(native, TargetViewConfig(crop_size=(16, 16)))
    assert {tuple(pairs[(i, 0)]["weak"].shape) for i in range(2)} == {(3, 16, 16)}


def test_image_without_label_is_an_error_naming_it(tmp_path):
    _folder(tmp_path, kinds=("grey",))
    write_rgb(tmp_path / "images" / "grey" / "lonely.jpg", SIZE)
    with pytest.raises(BadFileError) as info:
        _build(tmp_path, images=("images",), labels="labels")
    assert str(info.value) == (f"{tmp_path}: no label file for 1 of 2 images (label_rule stem): "
                               "images/grey/lonely.jpg -> labels/grey/lonely.png")


def test_unmapped_label_value_is_an_error_naming_file_and_value(tmp_path):
    write_rgb(tmp_path / "images" / "x.jpg", SIZE)
    write_label(tmp_path / "labels" / "x.png", label_grid([10, 77], SIZE))
    ds = _build(tmp_path, images=("images",), labels="labels")
    with pytest.raises(BadFileError, match=r"labels/x\.png: label values 77 are not mapped by the class file"):
        ds.load(0)


def test_truncated_image_is_an_error_naming_it(tmp_path):
    path = tmp_path / "images" / "x.png"
    write_rgb(path, SIZE)
    path.write_bytes(path.read_bytes()[:40])
    ds = build_dataset("images", str(tmp_path), "train", 5, images=("images",))
    with pytest.raises(BadFileError, match=r"images/x\.png: (corrupt|not a readable)"):
        ds.load(0)


def test_empty_folder_and_glob_matching_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError) as info:
        build_dataset("images", str(tmp_path), "train", 5, images=("empty",))
    assert str(info.value) == f"{tmp_path / 'empty'}: no images found (.png, .jpg, .jpeg)"
    with pytest.raises(LayoutError) as info:
        build_dataset("images", str(tmp_path), "train", 5, images=("frames/**/*.jpg",))
    assert str(info.value) == f"{tmp_path}/frames/**/*.jpg: no images found (.png, .jpg, .jpeg)"
    with pytest.raises(LayoutError) as info:
        build_dataset("images", str(tmp_path), "train", 5, images=("missing",))
    assert str(info.value) == f"{tmp_path / 'missing'}: image folder not found (images 'missing', relative to the " \
                              "root)"
    with pytest.raises(LayoutError, match="nowhere: root folder of the images dataset not found"):
        build_dataset("images", str(tmp_path / "nowhere"), "train", 5)


def test_class_count_must_match_the_model(tmp_path):
    _folder(tmp_path, kinds=("grey",))
    with pytest.raises(ValueError, match="defines 5 classes .* model predicts 7"):
        _build(tmp_path, num_classes=7, images=("images",), labels="labels")
    with pytest.raises(ValueError, match="images dataset has no labels"):
        _build(tmp_path, name="images", labels="labels")


def test_check_data_reports_bad_files_one_line_each(tmp_path, capsys):
    _folder(tmp_path, kinds=("grey", "palette"))
    write_rgb(tmp_path / "images" / "grey" / "nolabel.jpg", SIZE)
    write_label(tmp_path / "labels" / "palette" / "x.png", label_grid([10, 66, 99], SIZE), "palette")
    broken = tmp_path / "images" / "grey" / "x.jpg"
    broken.write_bytes(broken.read_bytes()[:30])
    classes = str(write_class_file(tmp_path / "classes.yaml"))
    report = check_dataset("folder", str(tmp_path), "train", 19, classes=classes,
                           own_data={"images": ("images",), "labels": "labels"})
    kinds = {(i.kind, i.path.split(str(tmp_path))[1]) for i in report.errors}
    assert kinds == {("missing label", "/labels/grey/nolabel.png"),
                     ("unmapped label value", "/labels/palette/x.png"),
                     ("unreadable file", "/images/grey/x.jpg")}
    unmapped = next(i for i in report.errors if i.kind == "unmapped label value")
    assert "values 66, 99 are not mapped by the class file" in unmapped.detail
    text = format_report(report)
    assert "5 classes" in text and "vehicle" in text and "result: FAILED (3 errors)" in text
    parser = argparse.ArgumentParser()
    add_check_data_arguments(parser)
    args = parser.parse_args(["--dataset", "folder", "--root", str(tmp_path), "--images", "images",
                              "--labels", "labels", "--classes", classes, "--workers", "0"])
    assert run_check_data(args) == 1
    assert "unmapped label value (1)" in capsys.readouterr().out


def test_gta5_labels_mapped_to_a_merged_class_set(tmp_path):
    from fixtures import write_gta5

    written = write_gta5(tmp_path / "gta", n=1, mismatched=())
    classes = write_class_file(
        tmp_path / "merged.yaml",
        classes=[{"train_id": 0, "name": "flat"}, {"train_id": 1, "name": "vehicle"}],
        ignore=[],
        from_source={"flat": ["road", "sidewalk"], "vehicle": ["car", "truck", "bus"]},
    )
    ds = build_dataset("gta5", str(tmp_path / "gta"), "train", 2, classes=str(classes))
    raw = written.labels[0]
    # Cityscapes label ids: road 7, sidewalk 8 -> flat; car 26, truck 27, bus 28 -> vehicle
    expected = np.full(raw.shape, 255, dtype=np.uint8)
    expected[np.isin(raw, (7, 8))] = 0
    expected[np.isin(raw, (26, 27, 28))] = 1
    np.testing.assert_array_equal(ds.load(0)[1], expected)
    assert ds.num_classes == 2
    with pytest.raises(ValueError, match="num_classes must be one of .* class definition file"):
        build_dataset("gta5", str(tmp_path / "gta"), "train", 2)
    no_section = write_class_file(tmp_path / "plain.yaml", classes=[{"train_id": 0, "name": "a"},
                                                                     {"train_id": 1, "name": "b"}])
    with pytest.raises(DataError, match="no from_source section"):
        build_dataset("gta5", str(tmp_path / "gta"), "train", 2, classes=str(no_section))


def test_check_data_of_mapped_gta5_and_of_a_config_section(tmp_path, capsys):
    from fixtures import write_gta5

    write_gta5(tmp_path / "gta", n=1, mismatched=())
    classes = write_class_file(tmp_path / "m.yaml", classes=[{"train_id": 0, "name": "flat"},
                                                             {"train_id": 1, "name": "vehicle"}],
                               ignore=[], from_source={"flat": ["road"], "vehicle": ["car"]})
    report = check_dataset("gta5", str(tmp_path / "gta"), "train", 19, classes=str(classes))
    assert report.ok and report.num_classes == 2 and report.class_names == ("flat", "vehicle")
    write_rgb(tmp_path / "cam" / "f.jpg", (20, 10))
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {{num_classes: 2}}\ndata:\n  target: {{name: images, root: {tmp_path}, images: [cam]}}\n")
    parser = argparse.ArgumentParser()
    add_check_data_arguments(parser)
    assert run_check_data(parser.parse_args(["--config", str(config), "--section", "target", "--workers", "0"])) == 0
    assert "[data.target]" in capsys.readouterr().out


def test_dataset_config_problems_for_own_data_keys():
    from tufl.config.schema import DatasetConfig

    assert DatasetConfig("folder", "d", labels="gt", classes="c.yaml", label_rule="a->b").problems() == []
    problems = DatasetConfig("gta5", "d", images=("x",)).problems()
    assert problems == ["images: only folder and images datasets take it (name is gta5)"]
    assert "labels: an images dataset is unlabelled" in DatasetConfig("images", "d", labels="gt").problems()[0]
    assert DatasetConfig("folder", "d", labels="gt").problems()[0].startswith("classes: a folder dataset with labels")
    assert DatasetConfig("folder", "d", label_rule="a-b").problems()[0].startswith("label_rule: must be")
