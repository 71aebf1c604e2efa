"""The probes of `tufl benchmark faults` (the whole run: docs/benchmarks.md §7): each must
see the behaviour it checks, so a regression fails the benchmark and not only a unit test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tufl.bench import fault_probes, faults, state_probes
from tufl.data.io import ImageTooLargeError, image_size


@pytest.fixture(scope="module")
def probe_config(tmp_path_factory) -> dict:
    from tufl.demo.scenes import ensure_demo_data

    data = tmp_path_factory.mktemp("probe_data")
    ensure_demo_data(data, seed=0, size=(64, 32), n_source=8, n_target_train=8, n_target_val=2, workers=1)
    return faults.run_config(data, data / "unused_run", 4)


def test_the_bomb_declares_ten_gigapixels_in_a_tiny_file(tmp_path):
    path = tmp_path / "bomb.png"
    fault_probes.bomb_png(path)
    assert path.stat().st_size < 200
    with pytest.raises(ImageTooLargeError, match="100000 x 100000"):
        image_size(path, max_pixels=64_000_000)


def test_bomb_probe_sees_a_named_skipped_sample(probe_config, tmp_path):
    probe = fault_probes.decompression_bomb(tmp_path, probe_config, Path(probe_config["data"]["source"]["root"]))
    assert probe["survived"], probe
    assert probe["check_data_names_it"] and probe["in_bad_samples_json"] and probe["train_status"] == 0


def test_learning_rate_probe_sees_refusals_and_finite_checkpoints(probe_config, tmp_path):
    probe = state_probes.poisoned_learning_rates(tmp_path, probe_config)
    assert probe["survived"], probe
    assert probe["refused_status"] == [2, 2] and not probe["run_folder_created"]
    assert probe["midway_status"] == 1 and probe["midway_checkpoints"] >= 1 and probe["every_checkpoint_finite"]


def test_fault_table_has_one_line_per_fault_with_what_was_lost():
    results = {"events": [{"fault": "SIGKILL", "stopped_cleanly": True, "lost": "nothing"}],
               "probes": [{"fault": "two runs on one folder", "survived": False, "lost": "see the record"}]}
    assert faults.fault_table(results).splitlines() == [
        "[faults] SIGKILL                 survived  lost: nothing",
        "[faults] two runs on one folder  NOT SURVIVED  lost: see the record"]


def test_small_disk_without_mount_rights_says_it_uses_the_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(fault_probes.os, "geteuid", lambda: 1000)
    with fault_probes.SmallDisk(tmp_path / "disk", 8192) as disk:
        assert not disk.mounted and "RLIMIT_FSIZE" in disk.how
