"""Input collection and prediction files on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tufl.data import labels
from tufl.evaluation.predict import collect_inputs, load_rgb, predict_files
from tufl.evaluation.writers import colorize, overlay
from tiny_models import conv_segmentor
from tufl.models.segmentor import Segmentor

C = 19


def _model() -> Segmentor:
    return conv_segmentor(C)


def _write_image(path: Path, height: int, width: int, seed: int) -> np.ndarray:
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_collect_inputs_from_files_folders_and_patterns(tmp_path: Path) -> None:
    a = tmp_path / "a.png"
    b = tmp_path / "sub" / "deep" / "b.jpg"
    c = tmp_path / "sub" / "c.png"
    for i, path in enumerate((a, b, c)):
        _write_image(path, 4, 4, i)
    (tmp_path / "sub" / "notes.txt").write_text("not an image")
    assert collect_inputs([str(tmp_path / "sub")]) == [c, b]  # sorted: sub/c.png < sub/deep/b.jpg
    assert collect_inputs([str(tmp_path / "*.png")]) == [a]
    assert collect_inputs([str(tmp_path / "**" / "*.png")]) == [a, c]
    assert collect_inputs([str(a), str(tmp_path)]) == [a, c, b]  # a once, then the folder's others
    with pytest.raises(FileNotFoundError, match=r"missing/\*\.png"):
        collect_inputs([str(a), str(tmp_path / "missing" / "*.png")])
    with pytest.raises(ValueError, match=r"notes\.txt: not an image"):
        collect_inputs([str(tmp_path / "sub" / "notes.txt")])


def test_predict_files_writes_every_output(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    arrays = {
        inputs / "x" / "frame1.png": _write_image(inputs / "x" / "frame1.png", 12, 16, 0),
        inputs / "x" / "frame2.png": _write_image(inputs / "x" / "frame2.png", 12, 16, 1),
        inputs / "y" / "frame1.jpg": _write_image(inputs / "y" / "frame1.jpg", 10, 14, 2),
    }
    files = collect_inputs([str(inputs)])
    model = _model().train()
    out = tmp_path / "out"
    written = predict_files(model, files, out, C, "cpu", batch_size=2, label_ids=True, progress=False)
    assert model.training
    assert [w.source for w in written] == files
    for entry in written:
        rel = entry.source.relative_to(inputs).with_suffix(".png")
        assert entry.color == out / "color" / rel
        assert entry.overlay == out / "overlay" / rel
        assert entry.train_ids == out / "trainid" / rel
        assert entry.label_ids == out / "labelIds" / rel
        image = load_rgb(entry.source)
        with torch.no_grad():
            expected = model.eval()(image[None]).main[0].argmax(0).numpy()
        train_ids = _read(entry.train_ids)
        assert np.array_equal(train_ids, expected)
        assert np.array_equal(_read(entry.color), colorize(expected, C))
        assert np.array_equal(_read(entry.overlay), overlay(image.permute(1, 2, 0).numpy(), expected, C))
        assert np.array_equal(_read(entry.label_ids), labels.train_id_to_label_id(C)[expected])
    # The PNG input was read losslessly.
    assert np.array_equal(load_rgb(files[0]).permute(1, 2, 0).numpy(), arrays[files[0]])


def test_resize_keeps_outputs_at_the_input_size(tmp_path: Path) -> None:
    _write_image(tmp_path / "in" / "a.png", 9, 13, 0)
    _write_image(tmp_path / "in" / "b.png", 20, 24, 1)
    written = predict_files(
        _model(), collect_inputs([str(tmp_path / "in")]), tmp_path / "out", C, "cpu",
        batch_size=2, resize=(8, 8), progress=False,
    )
    assert [_read(w.train_ids).shape for w in written] == [(9, 13), (20, 24)]
    assert [_read(w.overlay).shape for w in written] == [(9, 13, 3), (20, 24, 3)]
    assert all(w.label_ids is None for w in written)


def test_predict_files_rejects_bad_input(tmp_path: Path) -> None:
    _write_image(tmp_path / "a.png", 4, 4, 0)
    _write_image(tmp_path / "a.jpg", 4, 4, 1)
    with pytest.raises(ValueError, match="same outputs"):
        predict_files(_model(), [tmp_path / "a.png", tmp_path / "a.jpg"], tmp_path / "out", C, "cpu", progress=False)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"broken\.png: cannot read"):
        predict_files(_model(), [broken], tmp_path / "out", C, "cpu", progress=False)
    with pytest.raises(ValueError, match="label ids"):
        predict_files(_model(), [tmp_path / "a.png"], tmp_path / "out", 5, "cpu", label_ids=True)


def _truncated_jpeg(path: Path) -> None:
    array = np.random.default_rng(5).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    Image.fromarray(array).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[:200])  # a download cut short


def test_unreadable_images_are_reported_and_the_others_predicted(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for k in range(3):
        _write_image(folder / f"good{k}.png", 16, 20, seed=k)
    _truncated_jpeg(folder / "bad.jpg")
    files = collect_inputs([folder])
    with pytest.raises(ValueError, match=r"bad.jpg: cannot read the image"):
        predict_files(_model(), files, tmp_path / "strict", C, "cpu", progress=False)
    skipped: list[tuple[Path, str]] = []
    written = predict_files(_model(), files, tmp_path / "out", C, "cpu", batch_size=2, progress=False,
                            on_unreadable=lambda path, message: skipped.append((path, message)))
    assert sorted(w.source.name for w in written) == ["good0.png", "good1.png", "good2.png"]
    assert [p.name for p, _ in skipped] == ["bad.jpg"] and "cannot read the image" in skipped[0][1]
    assert sorted(p.name for p in (tmp_path / "out" / "color").iterdir()) == ["good0.png", "good1.png", "good2.png"]
