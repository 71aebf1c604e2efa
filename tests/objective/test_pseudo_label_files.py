"""Pseudo-label folders and their manifest: written last, checked by stage two, a rerun from
another checkpoint starts clean, leftovers of killed writes go, a folder in use is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import runs
from tiny_models import conv_segmentor
from tufl.cli import main
from tufl.data.registry import build_dataset
from tufl.data.samples import TargetPairs
from tufl.data.views import TargetViewConfig
from tufl.objective import pseudo_label_files
from tufl.objective.pseudo_label_files import MANIFEST_NAME, model_sha256, read_manifest, sample_files
from tufl.objective.pseudo_labels import OfflinePseudoLabels, read_pseudo_label, write_pseudo_labels
from tufl.runtime import atomic
from tufl.runtime.errors import BadFileError, FolderLockedError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def target(scene_info):
    return build_dataset("cityscapes", str(scene_info.target_root), "train", 19)


def _model_a():
    return conv_segmentor(19)


def _model_b():
    """Another checkpoint: class 5 everywhere with one confidence (small, uniform PNGs)."""
    model = conv_segmentor(19)
    with torch.no_grad():
        model.net.conv.weight.zero_()
        model.net.conv.bias.zero_()
        model.net.conv.bias[5] = 4.0
    return model


def _offline(target, folder: Path) -> OfflinePseudoLabels:
    return OfflinePseudoLabels(TargetPairs(target, TargetViewConfig(crop_size=runs.SIZE)), folder, 0.9)


def test_manifest_is_written_last_and_lists_every_file(target, tmp_path, monkeypatch):
    folder = tmp_path / "pl"
    written: list[str] = []
    real = pseudo_label_files.atomic_write_json

    def record(path, data):
        written.append(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")))
        return real(path, data)

    monkeypatch.setattr(pseudo_label_files, "atomic_write_json", record)
    assert write_pseudo_labels(_model_a(), target, folder, CPU, progress=False) == len(target)
    manifest = read_manifest(folder)
    names = {name for i in range(len(target)) for name in sample_files(target, i)}
    assert written == [sorted(names)]  # every PNG was in place when the manifest was written
    assert set(manifest["files"]) == names and manifest["samples"] == len(target)
    assert manifest["checkpoint"]["model_sha256"] == model_sha256(_model_a()) != model_sha256(_model_b())
    raw = json.loads((folder / MANIFEST_NAME).read_text())
    entry = raw["files"][sample_files(target, 0)[1]]
    assert entry["bytes"] == (folder / sample_files(target, 0)[1]).stat().st_size and len(entry["crc32"]) == 8
    dataset = _offline(target, folder)
    sample = dataset[(3, 0)]
    assert sample["pseudo_label"].shape == sample["weak"].shape[-2:]


def test_a_half_overwritten_folder_is_refused_naming_a_file(target, tmp_path):
    """Files of two checkpoints, one image's _pseudo and _conf from different ones: refused."""
    folder, other = tmp_path / "pl", tmp_path / "other"
    write_pseudo_labels(_model_a(), target, folder, CPU, progress=False)
    write_pseudo_labels(_model_b(), target, other, CPU, progress=False)
    for i in range(len(target) // 2):
        for name in sample_files(target, i):
            shutil.copyfile(other / name, folder / name)
    shutil.copyfile(other / sample_files(target, 5)[1], folder / sample_files(target, 5)[1])  # mixed pair
    with pytest.raises(BadFileError) as refused:
        _offline(target, folder)
    first = folder / sample_files(target, 0)[0]
    assert refused.value.path == str(first) and "the file changed after `tufl pseudo-label`" in str(refused.value)


def test_a_changed_file_of_the_same_size_is_refused_as_it_is_read(target, tmp_path):
    folder = tmp_path / "pl"
    write_pseudo_labels(_model_a(), target, folder, CPU, progress=False)
    conf = folder / sample_files(target, 2)[1]
    data = bytearray(conf.read_bytes())
    data[-20] ^= 0xFF  # same size, another CRC-32
    conf.write_bytes(bytes(data))
    dataset = _offline(target, folder)  # sizes match: accepted before training
    with pytest.raises(BadFileError, match=r"CRC-32 .*the manifest lists") as refused:
        dataset[(2, 0)]
    assert refused.value.path == str(conf)


def test_missing_manifest_file_or_sample_is_refused(target, tmp_path):
    folder = tmp_path / "pl"
    write_pseudo_labels(_model_a(), target, folder, CPU, progress=False)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    (folder / sample_files(target, 4)[0]).unlink()
    with pytest.raises(BadFileError, match="missing, but listed in") as refused:
        _offline(target, folder)
    assert refused.value.path == str(folder / sample_files(target, 4)[0])
    del manifest["files"][sample_files(target, 4)[0]], manifest["files"][sample_files(target, 4)[1]]
    manifest["samples"] -= 1
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BadFileError, match=f"no pseudo-label of target sample {target.sample_name(4)}"):
        _offline(target, folder)
    (folder / MANIFEST_NAME).unlink()
    with pytest.raises(BadFileError, match=r"manifest\.json: missing: the pseudo-label folder was not completely"):
        _offline(target, folder)


def test_a_folder_written_at_another_resize_is_refused(target, scene_info, tmp_path):
    folder = tmp_path / "pl"
    write_pseudo_labels(_model_a(), target, folder, CPU, progress=False)
    resized = build_dataset("cityscapes", str(scene_info.target_root), "train", 19, resize=(32, 16))
    with pytest.raises(BadFileError, match=r"resize None, but data.target.resize is \[32, 16\]"):
        _offline(resized, folder)


def test_a_rerun_from_another_checkpoint_starts_clean(target, tmp_path, capsys):
    folder = tmp_path / "pl"
    write_pseudo_labels(_model_a(), target, folder, CPU, progress=False)
    stale = folder / "gone" / "old_leftImg8bit_pseudo.png"  # of a sample the new run does not have
    stale.parent.mkdir()
    shutil.copyfile(folder / sample_files(target, 0)[0], stale)
    write_pseudo_labels(_model_a(), target, folder, CPU, progress=False)  # same source: no clean start
    assert "starting clean" not in capsys.readouterr().out and stale.exists()
    write_pseudo_labels(_model_b(), target, folder, CPU, progress=False)
    out = capsys.readouterr().out
    assert f"{folder} was written from another checkpoint" in out
    assert f"starting clean, removed its {2 * len(target) + 1} pseudo-label files" in out
    assert not stale.parent.exists()
    assert read_manifest(folder)["checkpoint"]["model_sha256"] == model_sha256(_model_b())
    labels, conf = read_pseudo_label(folder, target, 0, _offline(target, folder).files)
    assert (labels == 5).all() and np.ptp(conf) == 0


def test_a_killed_run_is_refused_and_its_leftovers_removed_by_the_next(target, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "pl"
    real, count = pseudo_label_files.atomic_write_bytes, []

    def killed(path, data):
        if len(count) == 5:
            raise KeyboardInterrupt
        count.append(path)
        real(path, data)

    monkeypatch.setattr(pseudo_label_files, "atomic_write_bytes", killed)
    with pytest.raises(KeyboardInterrupt):
        write_pseudo_labels(_model_a(), target, folder, CPU, progress=False)
    monkeypatch.undo()
    assert not (folder / MANIFEST_NAME).exists() and len(list(folder.rglob("*.png"))) == 5
    with pytest.raises(BadFileError, match="not completely written"):
        _offline(target, folder)
    city = (folder / sample_files(target, 0)[0]).parent
    leftovers = [city / ".x_leftImg8bit_conf.png.k3j_9az2.tmp", folder / ".manifest.json.abcdefgh.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")
    mine = city / ".notes.tmp"  # not a name tufl makes: kept
    mine.write_text("keep")
    write_pseudo_labels(_model_a(), target, folder, CPU, progress=False)
    out = capsys.readouterr().out
    assert f"removed 2 temporary file(s) of an interrupted write from {folder}" in out
    assert "was not completely written (no manifest): starting clean, removed its 5 pseudo-label files" in out
    assert not any(path.exists() for path in leftovers) and mine.exists()
    _offline(target, folder)


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that holds the folder's lock as `tufl pseudo-label` does while writing."""
    code = textwrap.dedent(f"""
        import sys, time
        from tufl.runtime.folder_lock import FolderLock
        lock = FolderLock({str(folder)!r}, "pseudo-labels").acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_folder_in_use_is_refused(target, tmp_path):
    folder = tmp_path / "pl"
    write_pseudo_labels(_model_a(), target, folder, CPU, progress=False)
    before = {p: p.read_bytes() for p in folder.rglob("*.png")}
    holder = _hold_lock(folder)
    try:
        with pytest.raises(FolderLockedError, match=rf"process {holder.pid} on .* writing this pseudo-labels folder"):
            write_pseudo_labels(_model_b(), target, folder, CPU, progress=False)
        with pytest.raises(FolderLockedError, match=rf"pseudo-labels are being written by process {holder.pid}"):
            _offline(target, folder)
    finally:
        holder.kill()
        holder.wait()
    assert {p: p.read_bytes() for p in folder.rglob("*.png")} == before
    _offline(target, folder)  # the holder is gone: usable again


def test_command_reports_a_folder_in_use_and_a_full_disk(scene_info, source_only_run, tmp_path, capsys, monkeypatch):
    import errno

    folder = tmp_path / "pl"
    checkpoint = str(source_only_run / "checkpoint_last.pt")
    tree = runs.run_tree(scene_info, tmp_path / "s2", "stage2", model={"pretrained": checkpoint},
                         pseudo_labels={"source": "offline", "dir": str(folder)})
    config = runs.write_yaml(tree, tmp_path / "s2.yaml")
    args = ["pseudo-label", "--config", str(config), "--checkpoint", checkpoint]
    holder = _hold_lock(folder)
    try:
        assert main(args) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {folder} is in use by process {holder.pid}")
    count: list[Path] = []
    real = pseudo_label_files.atomic_write_bytes

    def disk_full(path, data):
        count.append(Path(path))
        if len(count) < 3:
            return real(path, data)

        def half(handle):
            handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        atomic.atomic_write(path, half)

    monkeypatch.setattr(pseudo_label_files, "atomic_write_bytes", disk_full)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error")] == [
        f"error: cannot write {count[2]}: No space left on device"] and "Traceback" not in err
    assert not count[2].exists() and not (folder / MANIFEST_NAME).exists()
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    with pytest.raises(BadFileError, match="not completely written"):
        _offline(build_dataset("cityscapes", str(scene_info.target_root), "train", 19), folder)
