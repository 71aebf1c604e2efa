"""`tufl predict` colours predictions with the class colours stored in the checkpoint,
writes a legend of them, and refuses options that do not fit the model's classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tufl.cli import main
from tufl.data.class_set import ModelClasses
from tufl.models.build import ModelConfig, build_model
from tufl.models.segmentor import Segmentor
from tufl.runtime.checkpoint_files import save_checkpoint

NAMES = ("lane", "kerb", "sky")  # "sky" is also a Cityscapes class, the others are not
COLOURS = ((10, 200, 30), (240, 240, 0), (90, 0, 160))  # none of them a Cityscapes colour
CITYSCAPES_COLOURS = {"road": (128, 64, 128), "building": (70, 70, 70), "car": (0, 0, 142)}


def _images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for k, (height, width) in enumerate([(40, 56), (40, 56), (33, 47)]):
        path = folder / f"img{k}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _checkpoint(path: Path, names: tuple[str, ...], colours: tuple[tuple[int, int, int], ...]) -> Segmentor:
    """A 3-class BiSeNet saved as a tufl checkpoint with its class set; its classifier bias is
    set so that every class wins somewhere on the test images."""
    model = build_model(ModelConfig(arch="bisenet", num_classes=3, freeze_bn="none"), training=False).model.eval()
    batch = torch.stack([_read_tensor(p) for p in _images(path.parent / "calibration")[:2]])
    with torch.no_grad():
        model.net.head[1].bias -= model(batch).main.mean(dim=(0, 2, 3))
    classes = ModelClasses(names, colours, origin="test classes")
    save_checkpoint(path, {"model": model.state_dict(), "input_convention": "imagenet_rgb",
                           "model_config": {"arch": "bisenet", "num_classes": 3, "freeze_bn": "none"},
                           "classes": classes.to_record()})
    return model


def _read_tensor(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB") if image.mode != "L" else image)


def _predicted(model: Segmentor, path: Path) -> np.ndarray:
    with torch.no_grad():
        return model(_read_tensor(path)[None]).main[0].argmax(0).numpy()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Segmentor]:
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint_last.pt"
    return path, _checkpoint(path, NAMES, COLOURS)


def test_colour_maps_and_overlays_use_the_checkpoint_colours(tmp_path: Path, checkpoint, capsys) -> None:
    path, model = checkpoint
    images = _images(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(path), str(tmp_path / "in"), "--out", str(out),
                 "--device", "cpu", "--batch-size", "1"]) == 0, capsys.readouterr().err
    table = np.array(COLOURS, dtype=np.uint8)
    seen = set()
    for image in images:
        ids = _predicted(model, image)
        seen.update(np.unique(ids).tolist())
        assert np.array_equal(_read(out / "color" / image.name), table[ids])
        assert np.array_equal(_read(out / "trainid" / image.name), ids)
        rgb = _read_tensor(image).permute(1, 2, 0).numpy().astype(np.float64)
        blended = np.rint(0.5 * rgb + 0.5 * table[ids]).astype(np.uint8)
        assert np.abs(_read(out / "overlay" / image.name).astype(int) - blended).max() <= 1
    assert seen == {0, 1, 2}  # every colour was checked
    assert f"[tufl] class colours: {out / 'legend.png'}" in capsys.readouterr().out
    legend = _read(out / "legend.png")
    for colour in COLOURS:  # each class has a swatch: a solid block of its colour
        assert (legend == colour).all(axis=-1).sum() >= 12 * 12
    assert ((legend < 60).all(axis=-1)).sum() > 50  # and text in black


def test_the_cityscapes_palette_colours_by_class_name(tmp_path: Path, capsys) -> None:
    names = tuple(CITYSCAPES_COLOURS)
    path = tmp_path / "ckpt.pt"
    model = _checkpoint(path, names, COLOURS)
    image = _images(tmp_path / "in")[0]
    assert main(["predict", "--checkpoint", str(path), str(image), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--palette", "cityscapes"]) == 0, capsys.readouterr().err
    table = np.array([CITYSCAPES_COLOURS[n] for n in names], dtype=np.uint8)
    assert np.array_equal(_read(tmp_path / "out" / "color" / image.name), table[_predicted(model, image)])
    legend = _read(tmp_path / "out" / "legend.png")
    assert all((legend == colour).all(axis=-1).sum() >= 12 * 12 for colour in table.tolist())


def test_options_that_do_not_fit_the_classes_are_refused(tmp_path: Path, checkpoint, capsys) -> None:
    path, _ = checkpoint
    image = _images(tmp_path / "in")[0]
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(path), str(image), "--out", str(out), "--label-ids"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: Cityscapes label ids need a model of the 19-, 16- or 13-class "
                          "Cityscapes set; this one predicts 3 other classes (lane, kerb, sky) from test classes")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert main(["predict", "--checkpoint", str(path), str(image), "--out", str(out), "--palette", "cityscapes"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {path}: the Cityscapes palette has no colour for lane, kerb (classes of test "
                   "classes); use the model's palette\n")
    assert not out.exists()
