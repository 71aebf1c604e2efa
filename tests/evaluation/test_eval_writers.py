"""Prediction PNGs and atomic file output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tufl.data import labels
from tufl.data.class_set import ModelClasses
from tufl.runtime.atomic import atomic_path
from tufl.runtime.atomic import atomic_write_json
from tufl.evaluation.writers import (
    cityscapes_set_size,
    class_palette,
    colorize,
    legend_image,
    overlay,
    save_legend,
    save_color,
    save_label_ids,
    save_overlay,
    save_train_ids,
    to_label_ids,
)

PRED = np.array([[0, 1, 18], [255, 13, 10]], dtype=np.int64)


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_colorize_uses_the_cityscapes_palette() -> None:
    rgb = colorize(torch.from_numpy(PRED), 19)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [128, 64, 128]  # road
    assert rgb[0, 2].tolist() == [119, 11, 32]  # bicycle
    assert rgb[1, 1].tolist() == [0, 0, 142]  # car
    assert rgb[1, 0].tolist() == [0, 0, 0]  # ignore
    # In the 16-class set, train id 10 is "person", not "sky".
    assert colorize(np.array([[10]]), 16)[0, 0].tolist() == [220, 20, 60]


def test_overlay_blends_and_keeps_unlabelled_pixels() -> None:
    image = np.full((2, 3, 3), 100, dtype=np.uint8)
    blended = overlay(image, PRED, 19, alpha=0.25)
    # road (128, 64, 128): 0.75 * 100 + 0.25 * colour
    assert blended[0, 0].tolist() == [107, 91, 107]
    assert blended[1, 0].tolist() == [100, 100, 100]  # 255: image unchanged
    chw = overlay(torch.from_numpy(image).permute(2, 0, 1), PRED, 19, alpha=0.25)
    assert np.array_equal(chw, blended)
    with pytest.raises(ValueError, match="size"):
        overlay(np.zeros((4, 4, 3), np.uint8), PRED, 19)


def test_label_ids_for_the_benchmark_server() -> None:
    ids = to_label_ids(PRED, 19)
    assert ids.tolist() == [[7, 8, 33], [0, 26, 23]]
    # 16 and 13 classes map through their class names.
    assert to_label_ids(np.array([[3, 10, 15]]), 16).tolist() == [[12, 24, 33]]  # wall, person, bicycle
    assert to_label_ids(np.array([[3, 7, 12]]), 13).tolist() == [[19, 24, 33]]  # light, person, bicycle
    with pytest.raises(ValueError, match="num_classes"):
        to_label_ids(PRED, 7)


def test_saved_pngs_read_back(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (2, 3, 3), dtype=np.uint8)
    assert np.array_equal(_read(save_train_ids(tmp_path / "a" / "t.png", PRED)), PRED)
    assert np.array_equal(_read(save_color(tmp_path / "c.png", PRED, 19)), colorize(PRED, 19))
    assert np.array_equal(_read(save_overlay(tmp_path / "o.png", image, PRED, 19)), overlay(image, PRED, 19))
    label_ids = _read(save_label_ids(tmp_path / "l.png", PRED, 19))
    assert label_ids.ndim == 2 and np.array_equal(label_ids, to_label_ids(PRED, 19))
    # Label ids map back to the train ids (ignore stays ignore).
    assert np.array_equal(labels.cityscapes_id_lut(19)[label_ids], PRED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c.png", "l.png", "o.png"]


def test_train_ids_out_of_range_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"0\.\.255"):
        save_train_ids(tmp_path / "x.png", np.array([[0, 300]]))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        save_train_ids(tmp_path / "x.png", np.zeros((1, 2, 2), np.uint8))


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    atomic_write_json(target, {"miou": 0.5, "missing": float("nan")})
    assert target.read_text() == '{\n  "miou": 0.5,\n  "missing": null\n}\n'
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("interrupted")
    assert '"miou": 0.5' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    assert target.stat().st_mode & 0o777 == 0o644


def _classes(names: tuple[str, ...]) -> ModelClasses:
    colours = tuple((40 * k % 256, 255 - 30 * k, 90) for k in range(len(names)))
    return ModelClasses(names, colours, origin="my_classes.yaml")


def test_class_palettes_of_a_model() -> None:
    own = _classes(("road", "car", "sky"))
    assert np.array_equal(class_palette(own, "model")[:4], [[0, 255, 90], [40, 225, 90], [80, 195, 90], [0, 0, 0]])
    # Cityscapes colours by name, whatever the model's colours and train ids.
    assert class_palette(own, "cityscapes")[:3].tolist() == [[128, 64, 128], [0, 0, 142], [70, 130, 180]]
    assert np.array_equal(class_palette(ModelClasses.cityscapes(16), "cityscapes"), labels.palette(16))
    with pytest.raises(ValueError, match=r"no colour for flat, vehicles \(classes of my_classes\.yaml\)"):
        class_palette(_classes(("flat", "sky", "vehicles")), "cityscapes")
    assert [cityscapes_set_size(ModelClasses.cityscapes(n)) for n in (19, 16, 13)] == [19, 16, 13]
    assert cityscapes_set_size(own) is None
    assert cityscapes_set_size(ModelClasses(labels.class_names(13), ((1, 2, 3),) * 13)) == 13  # colours aside


def test_the_legend_shows_a_swatch_and_a_name_per_class(tmp_path: Path) -> None:
    three = _classes(("road", "car", "sky"))
    path = save_legend(tmp_path / "legend.png", three.names, three.palette())
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
    legend = _read(path)
    for colour in three.colours:
        assert (legend == colour).all(axis=-1).sum() >= 12 * 12  # a solid swatch of each colour
    six = _classes(("road", "car", "sky", "person", "rider", "bus"))
    taller = legend_image(six.names, six.palette())
    assert taller.shape[0] > 1.8 * legend.shape[0]  # a row per class
    wider = legend_image(("road", "a much longer class name", "sky"), three.palette())
    assert wider.shape[0] == legend.shape[0] and wider.shape[1] > legend.shape[1] + 60

    def text_pixels(image: np.ndarray) -> int:
        return int((image < 60).all(axis=-1).sum())  # black text on white

    assert text_pixels(wider) > text_pixels(legend) + 100
    with pytest.raises(ValueError, match="palette"):
        legend_image(three.names, np.zeros((3, 3), np.uint8))
