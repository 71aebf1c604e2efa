"""ACDC, Dark Zurich, BDD100K and Mapillary Vistas read from their official layouts.

Train ids are checked against hand-written expectations (Cityscapes label id -> train
id, BDD100K's own train ids, the Vistas -> Cityscapes table), not against the
look-up tables under test.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from benchmark_layouts import write_acdc, write_bdd100k, write_dark_zurich, write_mapillary
from fixtures import write_index_png

from tufl.data import DATASETS, LayoutError, build_dataset
from tufl.data.check import check_dataset, format_report
from tufl.data.labels import class_names
from tufl.data.mapillary import VISTAS_TO_CITYSCAPES, VISTAS_V12_CLASSES

# Hand-written: Cityscapes label id -> 19-class train id for the ids the generators use.
CITYSCAPES_EXPECTED = {7: 0, 8: 1, 11: 2, 21: 8, 23: 10, 24: 11, 26: 13, 33: 18, 0: 255, 9: 255}
# Hand-written: Vistas v1.2 value -> 19-class train id for the values the generator uses.
VISTAS_EXPECTED = {13: 0, 55: 13, 65: 255, 4: 255, 20: 12, 46: 5, 27: 10, 30: 8}


def _expected(label: np.ndarray, table: dict[int, int]) -> np.ndarray:
    out = np.full(label.shape, 255, dtype=np.uint8)
    for raw, tid in table.items():
        out[label == raw] = tid
    return out


# ------------------------------------------------------------------------------------ ACDC
def test_acdc_train_takes_all_four_conditions_and_maps_cityscapes_ids(tmp_path):
    written = write_acdc(tmp_path, n=2)
    ds = build_dataset("acdc", str(tmp_path), "train", 19)
    assert len(ds) == 8 and ds.has_labels
    assert [s.name.split("/")[:2] for s in ds.samples][::2] == [["fog", "train"], ["night", "train"],
                                                               ["rain", "train"], ["snow", "train"]]
    assert ds.sample_name(0) == "fog/train/GOPR035/GOPR035_frame_000000_rgb_anon.png"
    assert ds.label_path(0).endswith("gt/fog/train/GOPR035/GOPR035_frame_000000_gt_labelIds.png")
    pairs = [p for key in ("fog/train", "night/train", "rain/train", "snow/train") for p in written[key]]
    for i, (image_path, raw) in enumerate(pairs):
        assert ds.image_path(i) == str(image_path)
        np.testing.assert_array_equal(ds.read_label(i), _expected(raw, CITYSCAPES_EXPECTED))
    assert ds.orphan_labels() == []  # the *_gt_labelTrainIds.png files are not labels of this split


def test_acdc_condition_selection_and_test_split(tmp_path):
    write_acdc(tmp_path, parts=("train", "val", "test"))
    night = build_dataset("acdc", str(tmp_path), "night/val", 19)
    assert [s.name.split("/")[0] for s in night.samples] == ["night"] and night.has_labels
    two = build_dataset("acdc", str(tmp_path), "snow,fog/val", 19)
    assert [s.name.split("/")[0] for s in two.samples] == ["snow", "fog"]
    test = build_dataset("acdc", str(tmp_path), "test", 19)
    assert len(test) == 4 and not test.has_labels and test.load(0)[1] is None
    with pytest.raises(ValueError, match="condition"):
        build_dataset("acdc", str(tmp_path), "haze/val", 19)


def test_acdc_missing_condition_folder_is_named(tmp_path):
    write_acdc(tmp_path, conditions=("fog", "night", "rain"))
    with pytest.raises(LayoutError, match=r"missing rgb_anon/snow/val/, gt/snow/val/"):
        build_dataset("acdc", str(tmp_path), "val", 19)
    assert len(build_dataset("acdc", str(tmp_path), "rain/val", 19)) == 1
    with pytest.raises(LayoutError, match="ACDC root not found"):
        build_dataset("acdc", str(tmp_path / "nowhere"), "val", 19)


# ------------------------------------------------------------------------------ Dark Zurich
def test_dark_zurich_train_is_night_and_val_maps_cityscapes_ids(tmp_path):
    written = write_dark_zurich(tmp_path)
    train = build_dataset("dark_zurich", str(tmp_path), "train", 19)
    assert [s.image for s in train.samples] == [str(p) for p, _ in written["train/night"]]
    assert not train.has_labels and train.split == "train/night"
    assert len(build_dataset("dark_zurich", str(tmp_path), "train/day", 19)) == 1
    val = build_dataset("dark_zurich", str(tmp_path), "val", 19, resize=(32, 16))
    assert val.sample_name(1) == "GOPR0356/GOPR0356_frame_000001_rgb_anon.png"
    for i, (_, raw) in enumerate(written["val/night"]):
        np.testing.assert_array_equal(val.read_label(i, full_resolution=True), _expected(raw, CITYSCAPES_EXPECTED))
        image, label = val.load(i)
        assert image.shape == (16, 32, 3) and label.shape == (16, 32)
    with pytest.raises(ValueError, match="dark_zurich: split"):
        build_dataset("dark_zurich", str(tmp_path), "val/day", 19)


@pytest.mark.parametrize(("name", "write", "labels"), [
    ("dark_zurich", write_dark_zurich, "gt/val/night"),
    ("bdd100k", write_bdd100k, "labels/sem_seg/masks/val"),
])
def test_val_without_its_label_folder_names_it(tmp_path, name, write, labels):
    write(tmp_path)
    shutil.rmtree(tmp_path / labels)
    with pytest.raises(LayoutError, match=f"missing {labels}/"):
        build_dataset(name, str(tmp_path), "val", 19)


# ---------------------------------------------------------------------------------- BDD100K
@pytest.mark.parametrize("legacy", [False, True], ids=["current", "legacy_seg"])
def test_bdd100k_masks_are_train_ids(tmp_path, legacy):
    data_root = tmp_path / "bdd100k"
    written = write_bdd100k(data_root, legacy=legacy)
    root = tmp_path if legacy else data_root  # the folder holding bdd100k/ is accepted too
    val = build_dataset("bdd100k", str(root), "val", 19)
    assert len(val) == 2 and val.has_labels
    suffix = "_train_id.png" if legacy else ".png"
    assert val.label_path(0).endswith(("seg/labels/val/" if legacy else "labels/sem_seg/masks/val/")
                                      + "00000000-va0c4a1e" + suffix)
    for i, (image_path, raw) in enumerate(written["val"]):
        assert val.image_path(i) == str(image_path)
        # 0..18 are already train ids, 255 stays ignored
        np.testing.assert_array_equal(val.read_label(i), raw)
        assert val.read_image(i).shape == (36, 64, 3)
    # 16 classes: terrain (9) and train (16) are dropped, car 13 -> 12, bicycle 18 -> 15
    val16 = build_dataset("bdd100k", str(root), "val", 16)
    expected16 = {0: 0, 1: 1, 9: 255, 13: 12, 16: 255, 18: 15, 255: 255}
    np.testing.assert_array_equal(val16.read_label(0), _expected(written["val"][0][1], expected16))
    test = build_dataset("bdd100k", str(root), "test", 19)
    assert len(test) == 2 and not test.has_labels


# ------------------------------------------------------------------------------- Mapillary
def test_vistas_table_names_real_classes():
    assert len(VISTAS_V12_CLASSES) == 66 and VISTAS_V12_CLASSES[65] == "Unlabeled"
    assert (VISTAS_V12_CLASSES[13], VISTAS_V12_CLASSES[55], VISTAS_V12_CLASSES[46]) == (
        "Road", "Car", "Traffic Sign Frame")
    assert set(VISTAS_TO_CITYSCAPES) <= set(VISTAS_V12_CLASSES)
    assert set(VISTAS_TO_CITYSCAPES.values()) == set(class_names(19))  # every Cityscapes class is reachable


@pytest.mark.parametrize("v2_download", [False, True], ids=["v1.2", "v2.0_download"])
def test_mapillary_palette_indices_map_to_cityscapes(tmp_path, v2_download):
    written = write_mapillary(tmp_path, v2_download=v2_download)
    val = build_dataset("mapillary", str(tmp_path), "val", 19)
    assert len(val) == 3 and val.split == "validation"
    assert val.label_path(0).endswith(("validation/v1.2/labels/" if v2_download else "validation/labels/")
                                      + "val0_aBcD-xYz.png")
    for i, (_, raw) in enumerate(written["validation"]):
        label = val.read_label(i)
        np.testing.assert_array_equal(label, _expected(raw, VISTAS_EXPECTED))
    # a pixel of a raw class that maps to car reads 13, an unmapped one (guard rail) 255
    raw = written["validation"][0][1]
    assert val.read_label(0)[raw == 55].tolist() == [13] * int((raw == 55).sum())
    assert set(val.read_label(0)[raw == 4].tolist()) == {255}
    # mixed sizes come out at one size with `resize`
    resized = build_dataset("mapillary", str(tmp_path), "val", 19, resize=(40, 30))
    shapes = {resized.load(i)[0].shape for i in range(3)} | {resized.load(i)[1].shape + (3,) for i in range(3)}
    assert shapes == {(30, 40, 3)}
    # 13 classes (road, sidewalk, building, light, sign, vegetation, sky, person, rider, car, ...):
    # pole (5) dropped, car 13 -> 9
    val13 = build_dataset("mapillary", str(tmp_path), "val", 13)
    np.testing.assert_array_equal(val13.read_label(0)[raw == 46], 255)
    np.testing.assert_array_equal(val13.read_label(0)[raw == 55], 9)
    assert not build_dataset("mapillary", str(tmp_path), "test", 19).has_labels


def test_mapillary_missing_labels_are_named(tmp_path):
    write_mapillary(tmp_path)
    for path in (tmp_path / "validation" / "labels").iterdir():
        path.unlink()
    (tmp_path / "validation" / "labels").rmdir()
    with pytest.raises(LayoutError, match=r"missing validation/labels/"):
        build_dataset("mapillary", str(tmp_path), "val", 19)
    with pytest.raises(ValueError, match="mapillary: split"):
        build_dataset("mapillary", str(tmp_path), "validate", 19)


# ------------------------------------------------------------------------------ check-data
def test_check_data_covers_each_layout(tmp_path):
    write_acdc(tmp_path / "acdc")
    write_dark_zurich(tmp_path / "dz")
    write_bdd100k(tmp_path / "bdd")
    write_bdd100k(tmp_path / "bdd_old", legacy=True)
    mapillary = write_mapillary(tmp_path / "mvd")
    cases = [("acdc", "acdc", "val"), ("dark_zurich", "dz", "val"), ("bdd100k", "bdd", "val"),
             ("bdd100k", "bdd_old", "val"), ("mapillary", "mvd", "val"), ("acdc", "acdc", "night/train")]
    for name, folder, split in cases:
        report = check_dataset(name, str(tmp_path / folder), split, 19)
        assert report.ok and report.num_images == report.num_labels > 0, format_report(report)
    report = check_dataset("mapillary", str(tmp_path / "mvd"), "val", 19)
    raw = np.concatenate([r.ravel() for _, r in mapillary["validation"]])
    assert report.class_pixels[13] == int((raw == 55).sum())  # car
    assert report.ignored_pixels == int(np.isin(raw, (65, 4)).sum())
    # planted defects: a Vistas value beyond v1.2's 66 classes, a BDD100K value that is no train id
    write_index_png(mapillary["validation"][1][0].parent.parent / "labels" / "val1_aBcD-xYz.png",
                    np.full((30, 40), 70, dtype=np.uint8), palette=True)
    report = check_dataset("mapillary", str(tmp_path / "mvd"), "val", 19)
    assert [i.kind for i in report.errors] == ["unknown label value"] and "values 70" in report.errors[0].detail
    bdd = tmp_path / "bdd" / "labels" / "sem_seg" / "masks" / "val"
    write_index_png(next(bdd.iterdir()), np.full((36, 64), 40, dtype=np.uint8))
    assert [i.kind for i in check_dataset("bdd100k", str(tmp_path / "bdd"), "val", 19).errors] == [
        "unknown label value"]
    report = check_dataset("dark_zurich", str(tmp_path / "nowhere"), "val", 19)
    assert [i.kind for i in report.errors] == ["layout"] and "rgb_anon/val/night/" in report.errors[0].detail


def test_registered_and_exported():
    import tufl.data as data

    for name, cls in (("acdc", "ACDCDataset"), ("dark_zurich", "DarkZurichDataset"), ("bdd100k", "BDD100KDataset"),
                      ("mapillary", "MapillaryDataset")):
        assert DATASETS[name] is getattr(data, cls) and cls in data.__all__


def test_check_data_cli_defaults_to_the_labelled_split(tmp_path, capsys):
    import argparse

    from tufl.cli.check_data import add_arguments as add_check_data_arguments, run as run_check_data

    write_bdd100k(tmp_path / "bdd")
    write_acdc(tmp_path / "acdc", conditions=("night",))
    parser = argparse.ArgumentParser()
    add_check_data_arguments(parser)
    assert run_check_data(parser.parse_args(["--dataset", "bdd100k", "--root", str(tmp_path / "bdd"),
                                             "--workers", "0"])) == 0
    assert "(split val, 19 classes)" in capsys.readouterr().out
    assert run_check_data(parser.parse_args(["--dataset", "acdc", "--root", str(tmp_path / "acdc"),
                                             "--workers", "0"])) == 1  # val of all conditions: 3 missing
    out = capsys.readouterr().out
    assert "(split val, 19 classes)" in out and "missing rgb_anon/fog/val/" in out
    assert run_check_data(parser.parse_args(["--dataset", "acdc", "--root", str(tmp_path / "acdc"),
                                             "--split", "night/val", "--workers", "0"])) == 0
