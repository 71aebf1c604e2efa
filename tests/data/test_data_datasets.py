"""Datasets: layouts, label mappings (hand-written expectations), lists, resize, bad files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from fixtures import (
    write_cityscapes,
    write_crosscity,
    write_gta5,
    write_index_png,
    write_png16_rgb,
    write_rgb_png,
    write_synthia,
)

from tufl.data import BadFileError, LayoutError, build_dataset

I = 255  # ignore

# Cityscapes label ids (GTA5, Cityscapes and Cross-City files) and their train ids.
CITYSCAPES_RAW = np.array(
    [[7, 8, 11, 12, 13, 17, 19, 20],
     [21, 22, 23, 24, 25, 26, 27, 28],
     [31, 32, 33, 0, 1, 4, 9, 30]], dtype=np.uint8)
CITYSCAPES_EXPECTED = {
    19: [[0, 1, 2, 3, 4, 5, 6, 7],
         [8, 9, 10, 11, 12, 13, 14, 15],
         [16, 17, 18, I, I, I, I, I]],
    16: [[0, 1, 2, 3, 4, 5, 6, 7],
         [8, I, 9, 10, 11, 12, I, 13],
         [I, 14, 15, I, I, I, I, I]],
    13: [[0, 1, 2, I, I, I, 3, 4],
         [5, I, 6, 7, 8, 9, I, 10],
         [I, 11, 12, I, I, I, I, I]],
}

# SYNTHIA ids: 1 sky, 2 building, 3 road, 4 sidewalk, 5 fence, 6 vegetation, 7 pole,
# 8 car, 9 sign, 10 person, 11 bicycle, 12 motorcycle, 13 parking, 14 road-work,
# 15 light, 16 terrain, 17 rider, 18 truck, 19 bus, 20 train, 21 wall, 22 lanemarking.
SYNTHIA_RAW = np.array(
    [[0, 1, 2, 3, 4, 5, 6, 7],
     [8, 9, 10, 11, 12, 13, 14, 15],
     [16, 17, 18, 19, 20, 21, 22, 0]], dtype=np.uint16)
SYNTHIA_EXPECTED = {
    19: [[I, 10, 2, 0, 1, 4, 8, 5],
         [13, 7, 11, 18, 17, I, I, 6],
         [9, 12, 14, 15, 16, 3, I, I]],
    16: [[I, 9, 2, 0, 1, 4, 8, 5],
         [12, 7, 10, 15, 14, I, I, 6],
         [I, 11, I, 13, I, 3, I, I]],
    13: [[I, 6, 2, 0, 1, I, 5, I],
         [9, 4, 7, 12, 11, I, I, 3],
         [I, 8, I, 10, I, I, I, I]],
}


@pytest.mark.parametrize("num_classes", [19, 16, 13])
def test_gta5_palette_labels_map_to_train_ids(tmp_path, num_classes):
    written = write_gta5(tmp_path, n=1, size=(8, 3), mismatched=())
    write_index_png(written.label_paths[0], CITYSCAPES_RAW, palette=True)
    ds = build_dataset("gta5", str(tmp_path), "train", num_classes)
    image, label = ds.load(0)
    assert np.array_equal(image, written.images[0])
    assert label.dtype == np.uint8
    assert np.array_equal(label, np.array(CITYSCAPES_EXPECTED[num_classes]))


@pytest.mark.parametrize("num_classes", [19, 16, 13])
def test_cityscapes_label_ids_map_to_train_ids(tmp_path, num_classes):
    written = write_cityscapes(tmp_path, splits=("val",), cities=("aachen",), n_per_city=1, size=(8, 3))
    write_index_png(written["val"].label_paths[0], CITYSCAPES_RAW)
    ds = build_dataset("cityscapes", str(tmp_path), "val", num_classes)
    assert np.array_equal(ds.load(0)[1], np.array(CITYSCAPES_EXPECTED[num_classes]))


@pytest.mark.parametrize("num_classes", [19, 16, 13])
def test_synthia_first_channel_maps_to_train_ids(tmp_path, num_classes):
    written = write_synthia(tmp_path, n=1, size=(8, 3))
    # Other channels hold values above 255 that must not leak into the class ids.
    planes = [SYNTHIA_RAW, np.full_like(SYNTHIA_RAW, 4000), np.full_like(SYNTHIA_RAW, 700)]
    write_png16_rgb(written.label_paths[0], np.stack(planes, axis=2))
    ds = build_dataset("synthia", str(tmp_path), "train", num_classes)
    assert np.array_equal(ds.load(0)[1], np.array(SYNTHIA_EXPECTED[num_classes]))


def test_crosscity_eval_labels_map_to_13_classes(tmp_path):
    written = write_crosscity(tmp_path, n_train=1, n_test=1, size=(8, 3))
    write_index_png(written["Rome"]["test"].label_paths[0], CITYSCAPES_RAW)
    ds = build_dataset("crosscity", str(tmp_path), "Rome/test", 13)
    assert np.array_equal(ds.load(0)[1], np.array(CITYSCAPES_EXPECTED[13]))
    with pytest.raises(ValueError, match="num_classes must be one of \\(13,\\)"):
        build_dataset("crosscity", str(tmp_path), "Rome/test", 19)


def test_gta5_mismatched_label_is_resized_to_its_image_with_one_warning(tmp_path):
    written = write_gta5(tmp_path, n=2, size=(16, 8), mismatched=(1,))
    ds = build_dataset("gta5", str(tmp_path), "train", 19)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, label = ds.load(1)
        ds.load(1)
        ds.read_label(1, full_resolution=True)
    assert image.shape == (4, 8, 3) and label.shape == (4, 8)
    # Label 16x8 -> 8x4, nearest: source pixel floor((x + 0.5) * 2) = 2x + 1.
    raw = written.labels[1]
    expected = build_dataset("gta5", str(tmp_path), "train", 19).label_lut[raw[1::2, 1::2]]
    assert np.array_equal(label, expected)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "00002.png" in messages[0] and "16x8" in messages[0]


def test_cityscapes_nested_layout_names_and_optional_train_labels(tmp_path):
    written = write_cityscapes(
        tmp_path, splits=("train", "val"), cities=("bochum", "aachen"), labelled_splits=("val",)
    )
    val = build_dataset("cityscapes", str(tmp_path), "val", 19)
    assert [val.sample_name(i) for i in range(len(val))] == written["val"].names
    assert val.sample_name(0) == "aachen/aachen_000000_000019_leftImg8bit.png"
    assert val.label_path(0).endswith("gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png")
    assert val.has_labels
    train = build_dataset("cityscapes", str(tmp_path), "train", 19)
    assert not train.has_labels and train.load(0)[1] is None
    assert np.array_equal(train.load(3)[0], written["train"].images[3])


def test_cityscapes_val_without_labels_names_missing_folder(tmp_path):
    write_cityscapes(tmp_path, splits=("val",), labelled_splits=())
    with pytest.raises(LayoutError, match="gtFine/val/"):
        build_dataset("cityscapes", str(tmp_path), "val", 19)


@pytest.mark.parametrize(
    ("name", "split", "expected"),
    [
        ("gta5", "train", "images/, labels/"),
        ("synthia", "train", "RGB/, GT/LABELS/"),
        ("cityscapes", "val", "leftImg8bit/val/, gtFine/val/"),
        ("crosscity", "test", "Images/Test/, Labels/Test/"),
    ],
)
def test_missing_or_empty_root_names_expected_subfolders(tmp_path, name, split, expected):
    num_classes = 13 if name == "crosscity" else 19
    with pytest.raises(LayoutError, match="root not found") as missing:
        build_dataset(name, str(tmp_path / "absent"), split, num_classes)
    assert expected in str(missing.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError) as empty:
        build_dataset(name, str(tmp_path / "empty"), split, num_classes)
    assert expected in str(empty.value) and "empty" in str(empty.value)


def test_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(LayoutError, match="no images in"):
        build_dataset("gta5", str(tmp_path), "train", 19)


def test_list_files_select_and_order_samples(tmp_path):
    gta = write_gta5(tmp_path / "gta", n=4, mismatched=())
    (tmp_path / "gta.txt").write_text("# comment\n00003.png\n\n00001.png\n")
    ds = build_dataset("gta5", str(tmp_path / "gta"), "train", 19, list_file=str(tmp_path / "gta.txt"))
    assert [ds.sample_name(i) for i in range(len(ds))] == ["00003.png", "00001.png"]
    assert np.array_equal(ds.load(0)[0], gta.images[2])

    cs = write_cityscapes(tmp_path / "cs", splits=("train",), labelled_splits=())
    (tmp_path / "cs.txt").write_text(cs["train"].names[3] + "\n")
    ds = build_dataset("cityscapes", str(tmp_path / "cs"), "train", 19, list_file=str(tmp_path / "cs.txt"))
    assert len(ds) == 1 and np.array_equal(ds.load(0)[0], cs["train"].images[3])

    cc = write_crosscity(tmp_path / "cc", n_test=2)
    (tmp_path / "cc.txt").write_text("pano_00001_0_0\n")  # names without extension, as MaxSquare lists
    ds = build_dataset("crosscity", str(tmp_path / "cc"), "Rome/test", 13, list_file=str(tmp_path / "cc.txt"))
    assert ds.sample_name(0) == "pano_00001_0_0.png"
    assert np.array_equal(ds.load(0)[0], cc["Rome"]["test"].images[1])

    (tmp_path / "bad.txt").write_text("../escape.png\n")
    with pytest.raises(BadFileError, match=r"bad\.txt: line 1"):
        build_dataset("gta5", str(tmp_path / "gta"), "train", 19, list_file=str(tmp_path / "bad.txt"))


def test_crosscity_split_forms_and_unlabelled_train(tmp_path):
    written = write_crosscity(tmp_path, cities=("Rome", "Taipei"), n_train=3, n_test=2)
    train = build_dataset("crosscity", str(tmp_path), "taipei/train", 13)
    assert len(train) == 3 and not train.has_labels and train.city == "Taipei"
    assert np.array_equal(train.load(2)[0], written["Taipei"]["train"].images[2])
    city_root = build_dataset("crosscity", str(tmp_path / "Rome"), "test", 13)
    assert city_root.label_path(1).endswith("Rome/Labels/Test/pano_00001_0_0_eval.png")
    with pytest.raises(ValueError, match="unknown city 'Paris'"):
        build_dataset("crosscity", str(tmp_path), "Paris/test", 13)


def test_resize_applies_to_image_and_label_but_not_full_resolution_label(tmp_path):
    written = write_cityscapes(tmp_path, splits=("val",), cities=("aachen",), n_per_city=1, size=(16, 8))
    ds = build_dataset("cityscapes", str(tmp_path), "val", 19, resize=(8, 4))
    image, label = ds.load(0)
    lut = ds.label_lut
    assert image.shape == (4, 8, 3)
    assert np.array_equal(label, lut[written["val"].labels[0][1::2, 1::2]])
    assert np.array_equal(ds.read_label(0, full_resolution=True), lut[written["val"].labels[0]])
    assert np.array_equal(ds.read_image(0), image)


def test_bad_files_raise_naming_the_file_or_are_skipped(tmp_path):
    written = write_gta5(tmp_path, n=3, mismatched=())
    written.image_paths[1].write_bytes(b"corrupt")
    ds = build_dataset("gta5", str(tmp_path), "train", 19)
    with pytest.raises(BadFileError, match=r"images/00002\.png: not a readable image"):
        ds.load(1)
    written.label_paths[2].unlink()
    with pytest.raises(BadFileError, match=r"labels/00003\.png: file not found"):
        ds.load(2)

    tolerant = build_dataset("gta5", str(tmp_path), "train", 19, skip_bad_files=True)
    image, _ = tolerant.load(1)
    assert np.array_equal(image, written.images[0])  # 1 bad, 2 bad -> wraps to 0
    assert tolerant.skipped == 2
    met = tolerant.take_skipped()  # handed to the caller once, to be reported
    assert [(Path(p).parent.name, Path(p).name) for p, _ in met] == [("images", "00002.png"), ("labels", "00003.png")]
    assert met[0][1].startswith("not a readable image") and met[1][1] == "file not found"
    assert tolerant.take_skipped() == []
    again, _ = tolerant.load(1)
    assert np.array_equal(again, written.images[0]) and tolerant.skipped == 2
    assert tolerant.take_skipped() == []  # known bad samples are not met again


def test_size_mismatch_is_an_error_outside_gta5(tmp_path):
    written = write_cityscapes(tmp_path, splits=("val",), cities=("aachen",), n_per_city=1, size=(16, 8))
    write_index_png(written["val"].label_paths[0], np.zeros((4, 4), dtype=np.uint8))
    ds = build_dataset("cityscapes", str(tmp_path), "val", 19)
    with pytest.raises(BadFileError, match="label size 4x4 differs from the image size 16x8"):
        ds.load(0)


def test_factory_rejects_unknown_names_and_splits(tmp_path):
    write_rgb_png(tmp_path / "images" / "00001.png", np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="unknown dataset 'kitti'"):
        build_dataset("kitti", str(tmp_path), "train", 19)
    with pytest.raises(ValueError, match="split must be 'train'"):
        build_dataset("gta5", str(tmp_path), "val", 19)
    with pytest.raises(ValueError, match="num_classes must be one of"):
        build_dataset("gta5", str(tmp_path), "train", 20)


def test_dataset_classes_share_one_constructor_with_their_own_defaults(tmp_path):
    from tufl.data import CityscapesDataset, CrossCityDataset, GTA5Dataset, SynthiaDataset

    write_gta5(tmp_path / "gta", n=2, mismatched=())
    write_synthia(tmp_path / "syn", n=2)
    write_cityscapes(tmp_path / "cs", splits=("train",), labelled_splits=())
    write_crosscity(tmp_path / "cc")
    gta, syn = GTA5Dataset(tmp_path / "gta"), SynthiaDataset(tmp_path / "syn")
    assert (gta.split, gta.num_classes, len(gta)) == ("train", 19, 2)
    assert (syn.split, syn.num_classes, len(syn)) == ("train", 16, 2)
    assert syn.label_path(0).endswith("GT/LABELS/" + syn.sample_name(0))
    cs = CityscapesDataset(tmp_path / "cs")
    assert (cs.split, cs.has_labels) == ("train", False)
    cc = CrossCityDataset(tmp_path / "cc")
    assert (cc.city, cc.split, cc.num_classes, cc.has_labels) == ("Rome", "test", 13, True)
    with pytest.raises(ValueError, match="SYNTHIA has no official splits"):
        SynthiaDataset(tmp_path / "syn", "val")
