"""Prepared dataset copies: the same training samples bit for bit, stale copies found and rebuilt."""

from __future__ import annotations

import json
import os
import warnings
import zlib

import numpy as np
import pytest
import torch
import yaml
from fixtures import write_cityscapes, write_gta5, write_rgb_png

import tufl.data.base
import tufl.data.prepared_write
from tufl.cli import main
from tufl.runtime.typed_config import load_config
from tufl.config.schema import Config
from tufl.data.registry import build_dataset
from tufl.data.io import BadFileError
from tufl.data.prepared import MANIFEST, attach_prepared, copy_folder, find_prepared, prepare
from tufl.data.prepared_write import _SampleWriter
from tufl.data.samples import SourceSamples, TargetPairs
from tufl.data.transforms import SourceAugConfig
from tufl.data.views import TargetViewConfig
from tufl.train.builders import build_train_data
from tufl.runtime.distributed import DistContext

RESIZE = (48, 24)
CROP = (32, 16)
KEYS = [(i, seed) for seed in (0, 7) for i in range(4)]


def _gta5(root, n=4, **kwargs):
    write_gta5(root, n=n, size=(64, 32), mismatched=(1,))
    return build_dataset("gta5", str(root), "train", 19, resize=RESIZE, **kwargs)


def _samples(kind, base):
    if kind == "gta5":
        return SourceSamples(base, SourceAugConfig(crop_size=CROP, scale_range=(0.8, 1.3)))
    return TargetPairs(base, TargetViewConfig(crop_size=CROP))


def _all(dataset):
    return [dataset[key] for key in KEYS]


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key


def _forbid_originals(monkeypatch):
    def fail(path, *args):
        raise AssertionError(f"original file read: {path}")

    monkeypatch.setattr(tufl.data.base, "read_rgb", fail)


@pytest.mark.parametrize("fmt", ["npy", "png"])
@pytest.mark.parametrize("kind", ["gta5", "cityscapes"])
def test_training_samples_are_bit_identical_with_the_copy(tmp_path, monkeypatch, kind, fmt):
    if kind == "gta5":  # palette labels, one label larger than its image, bilinear resize
        base = _gta5(tmp_path / "data")
    else:  # nested city folders, labelIds, bicubic resize
        write_cityscapes(tmp_path / "data", splits=("train",), size=(64, 32))
        base = build_dataset("cityscapes", str(tmp_path / "data"), "train", 19, resize=RESIZE,
                             interpolation="bicubic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GTA5's mismatched label warns when read
        expected = _all(_samples(kind, base))
        result = prepare(base, tmp_path / "prep", fmt=fmt, workers=2 if kind == "cityscapes" else 1, progress=False)
    assert (result.samples, result.written, result.reused, result.bad) == (4, 4, 0, [])
    assert result.folder.name.startswith(f"{kind}-train-48x24-")
    files = sorted(p for p in (result.folder / "samples").rglob("*") if p.is_file())
    assert len(files) == 8 and all(p.suffix == f".{fmt}" for p in files)
    assert result.total_bytes == sum(p.stat().st_size for p in files)

    copy, reason = find_prepared(base, tmp_path / "prep")
    assert copy is not None, reason
    assert reason == f"prepared copy {result.folder} (4 samples, {fmt})"
    base.use_prepared(copy)
    _forbid_originals(monkeypatch)
    _assert_same(_all(_samples(kind, base)), expected)
    # evaluation reads still go to the full-resolution originals
    monkeypatch.undo()
    assert base.read_label(0, full_resolution=True).shape == (32, 64)


def test_manifest_records_originals_and_checksums(tmp_path):
    base = _gta5(tmp_path / "gta", n=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = prepare(base, tmp_path / "prep", workers=1, progress=False)
    manifest = json.loads((result.folder / MANIFEST).read_text())
    assert manifest["format"] == "npy" and manifest["samples"] == 2 and manifest["files"] == 4
    assert manifest["identity"]["root"] == str((tmp_path / "gta").resolve())
    record = manifest["records"][1]
    image = tmp_path / "gta" / "images" / "00002.png"
    assert record["originals"]["image"] == [image.stat().st_size, image.stat().st_mtime_ns]
    name, size, crc = record["files"]["label"]
    data = (result.folder / name).read_bytes()
    assert (size, crc) == (len(data), zlib.crc32(data))
    assert np.array_equal(np.load(result.folder / name), base.load(1)[1])
    assert not (result.folder / "progress.jsonl").exists()


def test_identity_separates_settings(tmp_path):
    base = _gta5(tmp_path / "gta", n=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(base, tmp_path / "prep", workers=1, progress=False)
    other_classes = build_dataset("gta5", str(tmp_path / "gta"), "train", 16, resize=RESIZE)
    other_size = build_dataset("gta5", str(tmp_path / "gta"), "train", 19, resize=(40, 20))
    folders = {copy_folder(b, tmp_path / "prep") for b in (base, other_classes, other_size)}
    assert len(folders) == 3
    copy, reason = find_prepared(other_classes, tmp_path / "prep")
    assert copy is None and reason.startswith(f"no prepared copy under {tmp_path / 'prep'}; gta5-train-48x24-")
    assert attach_prepared(base, None, "source") == \
        "source gta5: reading the original files (prepared copies are off (data.prepared_dir: null))"


def _prepared(tmp_path):
    base = _gta5(tmp_path / "gta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = prepare(base, tmp_path / "prep", workers=1, progress=False)
    return base, result.folder


def _rebuild_and_use(base, tmp_path, written):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = prepare(base, tmp_path / "prep", workers=1, progress=False)
    assert (result.written, result.reused) == (written, 4 - written)
    copy, reason = find_prepared(base, tmp_path / "prep")
    assert copy is not None, reason
    expected = [base.load(i) for i in range(4)]
    base.use_prepared(copy)
    for i, (image, label) in enumerate(expected):
        got = base.load(i)
        assert np.array_equal(got[0], image) and np.array_equal(got[1], label)


@pytest.mark.parametrize("change", ["rewritten", "touched"])
def test_changed_original_is_reported_and_rebuilt(tmp_path, change):
    base, folder = _prepared(tmp_path)
    path = tmp_path / "gta" / "images" / "00003.png"
    if change == "rewritten":  # other content and size
        write_rgb_png(path, np.full((32, 64, 3), 9, dtype=np.uint8))
    else:  # same bytes, newer mtime
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    copy, reason = find_prepared(base, tmp_path / "prep")
    assert copy is None
    assert reason == (f"prepared copy {folder} is out of date: 1 original file(s) changed since it was written; "
                      f"first: {path}")
    line = attach_prepared(base, tmp_path / "prep", "source")
    assert line.endswith("; reading the original files; rerun tufl prepare-data to rebuild it")
    _rebuild_and_use(base, tmp_path, written=1)


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_damaged_prepared_file_is_reported_and_rebuilt(tmp_path, damage):
    base, folder = _prepared(tmp_path)
    victim = folder / "samples" / "0000" / "000002.label.npy"
    if damage == "deleted":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:-10])
    copy, reason = find_prepared(base, tmp_path / "prep")
    assert copy is None
    assert reason == (f"prepared copy {folder} is damaged: 1 prepared file(s) missing or of the wrong size; "
                      f"first: {victim}")
    _rebuild_and_use(base, tmp_path, written=1)


def test_same_size_corruption_is_rewritten_by_its_checksum(tmp_path):
    base, folder = _prepared(tmp_path)
    victim = folder / "samples" / "0000" / "000001.image.npy"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    _rebuild_and_use(base, tmp_path, written=1)


def test_interrupted_prepare_is_reported_and_resumed(tmp_path, monkeypatch):
    base = _gta5(tmp_path / "gta")
    real_one, calls = _SampleWriter.one, []

    def one(self, index, old):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(index)
        return real_one(self, index, old)

    monkeypatch.setattr(_SampleWriter, "one", one)
    monkeypatch.setattr(tufl.data.prepared_write, "_CHUNK", 1)  # progress is journaled per finished chunk
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(base, tmp_path / "prep", workers=1, progress=False)
    monkeypatch.undo()
    folder = copy_folder(base, tmp_path / "prep")
    copy, reason = find_prepared(base, tmp_path / "prep")
    assert copy is None
    assert reason == f"prepared copy {folder} is incomplete (no manifest.json: tufl prepare-data did not finish)"
    _rebuild_and_use(base, tmp_path, written=2)


def test_corrupt_prepared_file_falls_back_to_the_original_with_one_warning(tmp_path):
    base, folder = _prepared(tmp_path)
    expected = base.load(2)
    copy, _ = find_prepared(base, tmp_path / "prep")
    base.use_prepared(copy)
    victim = folder / "samples" / "0000" / "000002.image.npy"
    victim.write_bytes(b"\x93NUMPY garbage" + bytes(victim.stat().st_size - 14))
    with pytest.warns(RuntimeWarning) as caught:
        for _ in range(3):
            image, label = base.load(2)
            assert np.array_equal(image, expected[0]) and np.array_equal(label, expected[1])
    assert len(caught) == 1 and str(victim) in str(caught[0].message)
    assert "original files" in str(caught[0].message)


def _config(tmp_path):
    write_gta5(tmp_path / "gta", n=3, size=(64, 32), mismatched=())
    write_cityscapes(tmp_path / "cs", splits=("train",), size=(64, 32), labelled_splits=())
    tree = {
        "experiment": {"name": "p", "output_dir": str(tmp_path / "run"), "mode": "stage1", "device": "cpu"},
        "model": {"arch": "bisenet", "num_classes": 19},
        "data": {
            "source": {"name": "gta5", "root": str(tmp_path / "gta"), "resize": [48, 24]},
            "target": {"name": "cityscapes", "root": str(tmp_path / "cs"), "resize": [32, 16]},
            "val": None, "num_workers": 0, "prepared_dir": str(tmp_path / "prep"),
            "source_aug": {"crop_size": list(CROP)}, "target_views": {"crop_size": list(CROP)},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_prepare_data_command_and_training_use_the_copy(tmp_path, capsys):
    config = _config(tmp_path)
    cfg = load_config(Config, config)
    build_train_data(cfg, DistContext(), tmp_path / "run")
    out = capsys.readouterr().out
    assert f"[tufl] source gta5: no prepared copy under {tmp_path / 'prep'} (`tufl prepare-data CONFIG`" in out

    assert main(["prepare-data", "--config", str(config), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "[tufl] source gta5: prepared copy " in out and "(3 samples, npy, " in out
    assert "[tufl] target cityscapes: prepared copy " in out and "(4 samples, npy, " in out
    assert out.count("verified") == 2

    data = build_train_data(cfg, DistContext(), tmp_path / "run")
    lines = [line for line in capsys.readouterr().out.splitlines() if "prepared copy" in line]
    assert len(lines) == 2
    assert lines[0].startswith(f"[tufl] source gta5: prepared copy {tmp_path / 'prep'}/gta5-train-48x24-")
    assert lines[0].endswith("(3 samples, npy)")
    assert lines[1].startswith(f"[tufl] target cityscapes: prepared copy {tmp_path / 'prep'}/cityscapes-train-32x16-")
    assert data.source.base._prepared is not None and data.target.base._prepared is not None

    # again: everything kept; --domains limits the work
    assert main(["prepare-data", "--config", str(config), "--workers", "1", "--domains", "target"]) == 0
    out = capsys.readouterr().out
    assert "source" not in out and "0 written, 4 kept" in out


def test_prepare_data_exit_status_for_bad_input_and_bad_originals(tmp_path, capsys):
    config = _config(tmp_path)
    assert main(["prepare-data", "--config", str(config), "--set", f"data.source.root={tmp_path / 'none'}"]) == 2
    assert "error: " in capsys.readouterr().err
    assert main(["prepare-data", "--config", str(config), "--set", "data.prepared_dir=null"]) == 2

    broken = tmp_path / "gta" / "images" / "00002.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert main(["prepare-data", "--config", str(config), "--workers", "1", "--domains", "source"]) == 1
    out = capsys.readouterr().out
    assert f"unreadable original: {broken}: " in out and "1 of 3 samples have unreadable originals" in out
    # the copy is used and raises the original's error, so skip_bad_files counts it
    base = build_dataset("gta5", str(tmp_path / "gta"), "train", 19, resize=(48, 24), skip_bad_files=True)
    copy, reason = find_prepared(base, tmp_path / "prep")
    assert copy is not None and reason.endswith("(3 samples, npy, 1 unreadable originals recorded)")
    base.use_prepared(copy)
    with pytest.raises(BadFileError, match="00002.png"):
        base._load_exact(1)
    image, _ = base.load(1)  # skipped to the next good sample
    assert np.array_equal(image, copy.load(base, 2)[0])
    assert [path for path, _ in base.take_skipped()] == [str(broken)]


def test_npy_copy_that_cannot_fit_is_refused_up_front(tmp_path, monkeypatch, capsys):
    config = _config(tmp_path)
    usage = tufl.data.prepared_write.shutil.disk_usage(tmp_path)
    # the gta5 source needs 3 * (48 * 24 * 4 + 256) bytes: leave one byte less free
    need = 3 * (48 * 24 * 4 + 256)
    monkeypatch.setattr(tufl.data.prepared_write.shutil, "disk_usage", lambda path: usage._replace(free=need - 1))
    assert main(["prepare-data", "--config", str(config), "--domains", "source"]) == 2
    err = capsys.readouterr().err
    assert "the npy copy of 3 gta5 samples at 48x24 needs about 0.0 GiB more" in err and "--format png" in err
    assert not list((tmp_path / "prep").rglob("*.npy"))
    monkeypatch.undo()
    monkeypatch.setattr(tufl.data.prepared_write.shutil, "disk_usage", lambda path: usage._replace(free=need))
    assert main(["prepare-data", "--config", str(config), "--domains", "source", "--workers", "1"]) == 0
