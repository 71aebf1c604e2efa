"""Prepared copies distrusted at load: bit rot falls back to the originals (said once, counted),
one writer at a time, and leftovers of killed writes removed."""

from __future__ import annotations

import json
import os
import socket
import warnings
import zlib

import numpy as np
import pytest
from fixtures import write_gta5

from tufl.cli import main
from tufl.data.prepared import MANIFEST, copy_folder, copy_identity, find_prepared, prepare
from tufl.data.registry import build_dataset
from tufl.runtime.errors import FolderLockedError
from tufl.runtime.folder_lock import FolderLock

RESIZE = (48, 24)


def _prepared(tmp_path, fmt="npy"):
    write_gta5(tmp_path / "gta", n=4, size=(64, 32), mismatched=())
    base = build_dataset("gta5", str(tmp_path / "gta"), "train", 19, resize=RESIZE)
    result = prepare(base, tmp_path / "prep", fmt=fmt, workers=1, progress=False)
    copy, reason = find_prepared(base, tmp_path / "prep")
    assert copy is not None, reason
    return base, result.folder, copy


def _rot_npy_label(path):
    """Same-size bit rot in a prepared npy label: its first pixel becomes 200 (no train id)."""
    data = bytearray(path.read_bytes())
    data[-RESIZE[0] * RESIZE[1]] = 200
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", ["npy", "png"])
def test_same_size_bit_rot_in_a_prepared_label_falls_back_to_the_original(tmp_path, fmt):
    base, folder, copy = _prepared(tmp_path, fmt)
    expected = [base.load(i) for i in range(4)]
    victim = folder / "samples" / "0000" / f"000002.label.{fmt}"
    if fmt == "npy":
        _rot_npy_label(victim)
    else:  # a flipped bit inside the compressed data: same size, another CRC-32
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
    assert find_prepared(base, tmp_path / "prep")[0] is not None  # stat alone cannot tell
    base.use_prepared(copy)
    with pytest.warns(RuntimeWarning) as caught:
        for _ in range(3):
            for i in range(4):
                image, label = base.load(i)
                assert np.array_equal(image, expected[i][0]) and np.array_equal(label, expected[i][1])
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(f"{victim}: prepared file unusable (its CRC-32 differs from the one recorded")
    assert str(base.samples[2].image) in message and "1 prepared file(s) unusable so far" in message
    assert list(copy.fallbacks) == [str(victim)]


def test_a_prepared_label_without_train_ids_is_not_used_even_with_a_matching_checksum(tmp_path):
    base, folder, _ = _prepared(tmp_path)
    expected = base.load(1)
    victim = folder / "samples" / "0000" / "000001.label.npy"
    _rot_npy_label(victim)
    manifest = json.loads((folder / MANIFEST).read_text())  # a copy written wrong, its record agreeing
    data = victim.read_bytes()
    manifest["records"][1]["files"]["label"][2] = zlib.crc32(data)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    copy, reason = find_prepared(base, tmp_path / "prep")
    assert copy is not None, reason
    base.use_prepared(copy)
    with pytest.warns(RuntimeWarning, match=r"label values 200 are not train ids of 19 classes"):
        image, label = base.load(1)
    assert np.array_equal(label, expected[1]) and list(copy.fallbacks) == [str(victim)]


def test_a_second_prepare_of_a_locked_copy_is_refused_naming_the_holder(tmp_path, capsys):
    write_gta5(tmp_path / "gta", n=2, size=(64, 32), mismatched=())
    base = build_dataset("gta5", str(tmp_path / "gta"), "train", 19, resize=RESIZE)
    folder = copy_folder(base, tmp_path / "prep")
    holder = f"process {os.getpid()} on {socket.gethostname()}"
    with FolderLock(folder, "prepared copy"):  # another prepare, still running
        with pytest.raises(FolderLockedError, match=f"{folder} is in use by {holder}") as refused:
            prepare(base, tmp_path / "prep", workers=1, progress=False)
        assert "prepared copy folder" in str(refused.value)
        assert not (folder / "samples").exists()  # nothing written, nothing removed
    result = prepare(base, tmp_path / "prep", workers=1, progress=False)  # the holder ended
    assert result.written == 2


def test_prepare_data_command_says_who_holds_the_copy(tmp_path, capsys):
    write_gta5(tmp_path / "gta", n=2, size=(64, 32), mismatched=())
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({
        "experiment": {"output_dir": str(tmp_path / "run"), "mode": "source_only", "device": "cpu"},
        "loss": {"unsupervised": "none"},
        "data": {"source": {"name": "gta5", "root": str(tmp_path / "gta"), "resize": list(RESIZE)},
                 "target": {"name": "gta5", "root": str(tmp_path / "gta")},
                 "val": None, "num_workers": 0, "prepared_dir": str(tmp_path / "prep")},
    }))
    base = build_dataset("gta5", str(tmp_path / "gta"), "train", 19, resize=RESIZE)
    with FolderLock(copy_folder(base, tmp_path / "prep"), "prepared copy"):
        status = main(["prepare-data", "--config", str(config), "--domains", "source", "--workers", "1"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: ") and f"in use by process {os.getpid()} on {socket.gethostname()}" in err


def test_leftovers_of_killed_writes_are_removed_when_prepare_runs_again(tmp_path):
    base, folder, _ = _prepared(tmp_path)
    leftovers = [folder / "samples" / "0000" / ".000001.image.npy.4242.tmp", folder / ".manifest.json.k3j9az.tmp",
                 folder / ".progress.jsonl.x8d7q2.tmp"]
    for path in leftovers:
        path.write_bytes(b"partial")
    result = prepare(base, tmp_path / "prep", workers=1, progress=False)
    assert (result.written, result.reused) == (0, 4)
    assert not any(path.exists() for path in leftovers)


def test_a_non_default_pixel_limit_gets_its_own_copy(tmp_path):
    write_gta5(tmp_path / "gta", n=2, size=(64, 32), mismatched=())
    default = build_dataset("gta5", str(tmp_path / "gta"), "train", 19, resize=RESIZE)
    small = build_dataset("gta5", str(tmp_path / "gta"), "train", 19, resize=RESIZE, max_image_pixels=1000)
    assert "max_image_pixels" not in copy_identity(default)  # copies written before the limit stay valid
    assert copy_identity(small)["max_image_pixels"] == 1000
    assert copy_folder(default, tmp_path) != copy_folder(small, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = prepare(small, tmp_path / "prep", workers=1, progress=False)
    assert len(result.bad) == 2 and all("over data.max_image_pixels (1000)" in problem for _, problem in result.bad)
