"""Class definition files: parsing, look-up tables, source mapping, and each invalid file."""

from __future__ import annotations

import numpy as np
import pytest
from own_data import FIVE_EXPECTED, write_class_file

from tufl.data.class_set import UNMAPPED, ClassFileError, load_class_set
from tufl.data.labels import class_names, palette


def test_five_class_file_gives_names_colours_and_value_table(tmp_path):
    cs = load_class_set(write_class_file(tmp_path / "c.yaml"))
    assert cs.names == ("road", "vehicle", "person", "sky", "building") and cs.num_classes == 5
    lut = cs.value_lut()
    for value, train_id in FIVE_EXPECTED.items():
        assert lut[value] == train_id, value
    assert lut[12] == UNMAPPED and lut[65535] == UNMAPPED
    table = cs.palette()
    assert table[0].tolist() == [128, 64, 128] and table[4].tolist() == [70, 70, 70]
    assert table[3].tolist() != [0, 0, 0] and table[5:].sum() == 0  # sky: a generated colour


def test_from_source_maps_cityscapes_names_to_merged_classes(tmp_path):
    cs = load_class_set(write_class_file(
        tmp_path / "c.yaml", classes=[{"train_id": 0, "name": "flat"}, {"train_id": 1, "name": "thing"}], ignore=[],
        from_source={"flat": ["road", "sidewalk"], "thing": "car"}))
    lut = cs.source_lut(class_names(19), "19-class gta5")
    assert lut[0] == 0 and lut[1] == 0 and lut[13] == 1  # road, sidewalk, car
    assert lut[2] == 255 and lut[255] == 255  # building is not listed: ignored
    bad = load_class_set(write_class_file(
        tmp_path / "d.yaml", classes=[{"train_id": 0, "name": "a"}, {"train_id": 1, "name": "b"}], ignore=[],
        from_source={"a": ["roadway"]}))
    with pytest.raises(ClassFileError, match=r"from_source names \['roadway'\], which are not 19-class gta5"):
        bad.source_lut(class_names(19), "19-class gta5")


def test_palette_of_a_custom_count_is_distinct():
    table = palette(7)
    assert len({tuple(c) for c in table[:7].tolist()}) == 7 and table[7:].sum() == 0


A, B = {"train_id": 0, "name": "a"}, {"train_id": 1, "name": "b"}


@pytest.mark.parametrize(
    ("classes", "ignore", "extra", "message"),
    [
        ([{**A, "value": 1}, {**B, "value": 1}], [], {}, "raw value 1 is defined twice"),
        ([{**A, "value": 1}, B], [1], {}, "raw value 1 is both ignored and a class value"),
        ([A, B, {"train_id": 1, "name": "c"}], [], {}, "train id 1 is named both 'b' and 'c'"),
        ([A, {"train_id": 1, "name": "a"}], [], {}, "class name 'a' is used by train ids 0 and 1"),
        ([A, {"train_id": 255, "name": "b"}], [], {}, r"train_id must be an integer in 0\.\.254, got 255"),
        ([A, {"train_id": 2, "name": "b"}], [], {}, r"contiguous 0\.\.1; missing \[1\]"),
        ([A], [], {}, "at least 2 classes"),
        ([A, {**B, "value": 70000}], [], {}, r"value must be an integer in 0\.\.65535"),
        ([A, {**B, "color": [1, 2]}], [], {}, r"color must be \[r, g, b\]"),
        ([A, B], [], {"from_source": {"c": ["road"]}}, "'c' is not a class of this file"),
        ([A, B], [], {"from_source": {"a": ["road"], "b": ["road"]}}, "'road' is mapped to both 'a' and 'b'"),
        ([A, B], [], {"colours": 1}, r"unknown sections \['colours'\]"),
        ([A, {"value": 3, "name": "b"}], [], {}, r"classes entry 2: needs a train_id \(the class"),
        ([A, {"value": 3}], [], {}, r"classes entry 2: needs a train_id and a name \(the class"),
        ([A, {"value": 3, "train_id": 1}], [], {},
         r"train id 1 has no name: give one of its entries \(classes entry 2\)"),
    ],
)
def test_invalid_class_files_name_the_file_and_the_problem(tmp_path, classes, ignore, extra, message):
    path = write_class_file(tmp_path / "bad.yaml", classes=classes, ignore=ignore, **extra)
    with pytest.raises(ClassFileError, match=message) as info:
        load_class_set(path)
    assert str(info.value).startswith(f"{path}: class file:")


def test_duplicate_yaml_keys_and_missing_file(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("classes:\n  - {train_id: 0, name: a}\n  - {train_id: 1, name: b}\n"
                    "from_source:\n  a: [road]\n  a: [car]\n")
    with pytest.raises(ClassFileError, match="duplicate key 'a'"):
        load_class_set(path)
    with pytest.raises(ClassFileError, match="file not found"):
        load_class_set(tmp_path / "none.yaml")


def test_value_table_is_read_only(tmp_path):
    cs = load_class_set(write_class_file(tmp_path / "c.yaml"))
    with pytest.raises(ValueError):
        cs.value_lut()[0] = 3
    assert np.array_equal(cs.value_lut(), cs.value_lut())


def test_class_set_of_a_stored_run_config(tmp_path):
    from tufl.data.class_set import class_set_of_config

    path = write_class_file(tmp_path / "c.yaml")
    stored = {"data": {"source": {"name": "gta5", "classes": str(path)}, "target": {"classes": None}, "val": None}}
    assert class_set_of_config(stored).names[1] == "vehicle"
    assert class_set_of_config({"data": {"val": {"classes": str(tmp_path / "gone.yaml")}}}) is None
    assert class_set_of_config({}) is None


def test_merged_entries_name_their_class_once(tmp_path):
    path = write_class_file(tmp_path / "merged.yaml", ignore=[0], classes=[
        {"value": 5, "train_id": 1},                      # named by a later entry
        {"value": 1, "train_id": 0, "name": "flat", "color": [1, 2, 3]},
        {"value": 2, "train_id": 0},
        {"value": 7, "train_id": 1, "name": "thing"},
        {"value": 9, "train_id": 0},
    ])
    cs = load_class_set(path)
    assert cs.names == ("flat", "thing")
    assert cs.value_to_train_id == ((0, 255), (1, 0), (2, 0), (5, 1), (7, 1), (9, 0))
    assert cs.colours[0] == (1, 2, 3)


def test_a_class_named_nowhere_is_named_by_its_train_id(tmp_path):
    path = write_class_file(tmp_path / "unnamed.yaml", ignore=[], classes=[
        {"value": 1, "train_id": 0, "name": "flat"}, {"value": 2, "train_id": 1}, {"value": 3, "train_id": 1}])
    with pytest.raises(ClassFileError) as info:
        load_class_set(path)
    assert str(info.value) == (f"{path}: class file: train id 1 has no name: give one of its entries "
                               "(classes entries 2, 3) a name")
