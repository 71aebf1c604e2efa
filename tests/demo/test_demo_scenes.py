"""Tests of the procedural demo data: determinism, on-disk layouts, domain gap, caching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tufl.data.check import check_dataset
from tufl.demo import scenes
from tufl.demo.render import render_scene
from tufl.demo.scenes import (
    MANIFEST_NAME,
    SPLITS,
    class_frequencies,
    ensure_demo_data,
    generate_demo_data,
    load_demo_data_info,
    split_files,
)

SIZE = (64, 32)
COUNTS = {"n_source": 4, "n_target_train": 4, "n_target_val": 3}
# Cityscapes label ids of the 19 classes, written out by hand.
CLASS_IDS = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
EGO_VEHICLE = 1


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> scenes.DemoDataInfo:
    root = tmp_path_factory.mktemp("demo")
    return generate_demo_data(root, seed=3, size=SIZE, workers=1, **COUNTS)


def _scenes(domain: str, n: int, size: tuple[int, int] = (128, 64)) -> list[tuple[np.ndarray, np.ndarray]]:
    return [render_scene(domain, size, np.random.default_rng([11, i])) for i in range(n)]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- determinism


def test_render_scene_depends_only_on_generator_state() -> None:
    a_img, a_lab = render_scene("realistic", (96, 48), np.random.default_rng(5))
    b_img, b_lab = render_scene("realistic", (96, 48), np.random.default_rng(5))
    c_img, c_lab = render_scene("realistic", (96, 48), np.random.default_rng(6))
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)
    assert a_img.shape == (48, 96, 3) and a_img.dtype == np.uint8
    assert a_lab.shape == (48, 96) and a_lab.dtype == np.uint8


def test_same_seed_gives_identical_bytes_whatever_the_workers(
    dataset: scenes.DemoDataInfo, tmp_path: Path
) -> None:
    again = generate_demo_data(tmp_path / "again", seed=3, size=SIZE, workers=2, **COUNTS)
    first, second = _all_files(dataset.root), _all_files(again.root)
    assert len(first) == 2 * sum(COUNTS.values()) + 1  # images, labels, manifest
    assert first == second


def test_different_seed_gives_different_data(dataset: scenes.DemoDataInfo, tmp_path: Path) -> None:
    other = generate_demo_data(tmp_path, seed=4, size=SIZE, workers=1, **COUNTS)
    first, second = _all_files(dataset.root), _all_files(other.root)
    assert first.keys() == second.keys()
    images = [k for k in first if k.endswith(".png")]
    assert all(first[k] != second[k] for k in images if "images" in k or "leftImg8bit" in k)


# --------------------------------------------------------------------------- layouts


def test_files_follow_the_gta5_and_cityscapes_layouts(dataset: scenes.DemoDataInfo) -> None:
    root = dataset.root
    assert sorted(p.name for p in (root / "gta5_like" / "images").iterdir()) == [
        "00001.png", "00002.png", "00003.png", "00004.png"]
    assert sorted(p.name for p in (root / "gta5_like" / "labels").iterdir()) == [
        "00001.png", "00002.png", "00003.png", "00004.png"]
    val = sorted(str(p.relative_to(root / "cityscapes_like"))
                 for p in (root / "cityscapes_like").rglob("*val/*/*.png"))
    assert val == [
        "gtFine/val/southport/southport_000000_000019_gtFine_labelIds.png",
        "gtFine/val/southport/southport_000001_000019_gtFine_labelIds.png",
        "gtFine/val/southport/southport_000002_000019_gtFine_labelIds.png",
        "leftImg8bit/val/southport/southport_000000_000019_leftImg8bit.png",
        "leftImg8bit/val/southport/southport_000001_000019_leftImg8bit.png",
        "leftImg8bit/val/southport/southport_000002_000019_leftImg8bit.png",
    ]
    train_images = list((root / "cityscapes_like" / "leftImg8bit" / "train").rglob("*.png"))
    train_labels = list((root / "cityscapes_like" / "gtFine" / "train").rglob("*.png"))
    assert len(train_images) == len(train_labels) == 4


def test_images_and_labels_are_valid(dataset: scenes.DemoDataInfo) -> None:
    for split in SPLITS:
        pairs = split_files(dataset, split)
        assert len(pairs) == dataset.count(split)
        for image_path, label_path in pairs:
            with Image.open(image_path) as image:
                assert image.format == "PNG" and image.mode == "RGB" and image.size == SIZE
            with Image.open(label_path) as label:
                assert label.format == "PNG" and label.size == SIZE
                values = set(np.unique(np.asarray(label)).tolist())
                if split == "source":
                    assert label.mode == "P"
                    palette = label.getpalette()
                    assert palette[3 * 26:3 * 26 + 3] == [0, 0, 142]  # car
                    assert palette[3 * 7:3 * 7 + 3] == [128, 64, 128]  # road
                    assert values <= CLASS_IDS
                else:
                    assert label.mode == "L"
                    assert values <= CLASS_IDS | {EGO_VEHICLE}


@pytest.mark.parametrize(("name", "split", "folder", "count"), [
    ("gta5", "train", "gta5_like", COUNTS["n_source"]),
    ("cityscapes", "train", "cityscapes_like", COUNTS["n_target_train"]),
    ("cityscapes", "val", "cityscapes_like", COUNTS["n_target_val"]),
])
def test_dataset_checker_accepts_both_layouts(dataset: scenes.DemoDataInfo, name: str, split: str,
                                              folder: str, count: int) -> None:
    report = check_dataset(name, str(dataset.root / folder), split, 19)
    assert report.ok, report.issues
    assert report.issues == []
    assert report.num_images == report.num_labels == count
    assert sum(report.class_pixels) + report.ignored_pixels == count * SIZE[0] * SIZE[1]


def test_class_frequencies_match_the_label_files(dataset: scenes.DemoDataInfo) -> None:
    for split in SPLITS:
        counts: dict[int, int] = {}
        for _, label_path in split_files(dataset, split):
            ids, n = np.unique(np.asarray(Image.open(label_path)), return_counts=True)
            for i, c in zip(ids.tolist(), n.tolist()):
                counts[i] = counts.get(i, 0) + c
        total = dataset.count(split) * SIZE[0] * SIZE[1]
        from_files = class_frequencies(dataset, split)
        assert from_files["car"] == pytest.approx(counts.get(26, 0) / total)
        assert from_files["road"] == pytest.approx(counts.get(7, 0) / total)
        expected_ignored = counts.get(EGO_VEHICLE, 0) / total
        assert 1.0 - sum(from_files.values()) == pytest.approx(expected_ignored, abs=1e-9)
        assert from_files == pytest.approx(dataset.class_fractions[split])


# --------------------------------------------------------------------------- the two domains


def test_source_covers_most_classes() -> None:
    present = set()
    for _, labels in _scenes("synthetic", 24):
        present |= set(np.unique(labels).tolist())
    assert len(present & CLASS_IDS) >= 15
    assert EGO_VEHICLE not in present


def _class_stats(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[dict[int, np.ndarray], np.ndarray]:
    means = {}
    for label_id in (7, 11, 21, 23):  # road, building, vegetation, sky
        pixels = np.concatenate([img[lab == label_id] for img, lab in pairs]).astype(float)
        means[label_id] = pixels.mean(axis=0)
    counts = sum(np.bincount(lab.ravel(), minlength=256) for _, lab in pairs)
    return means, counts / counts.sum()


def _road_roughness(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Median absolute difference between horizontal neighbours inside the road.

    The median ignores the few steps at lane markings and shadow edges.
    """
    diffs = []
    for img, lab in pairs:
        both = (lab[:, 1:] == 7) & (lab[:, :-1] == 7)
        step = np.abs(np.diff(img.astype(float), axis=1)).mean(axis=-1)
        diffs.append(step[both])
    return float(np.median(np.concatenate(diffs)))


def test_domains_differ_in_look_and_content() -> None:
    synthetic, realistic = _scenes("synthetic", 16), _scenes("realistic", 16)
    s_means, s_freq = _class_stats(synthetic)
    r_means, r_freq = _class_stats(realistic)
    for label_id in s_means:
        assert np.linalg.norm(s_means[label_id] - r_means[label_id]) > 15.0, label_id
    # Synthetic sky is saturated blue; the realistic one is an overcast grey.
    sky_s, sky_r = s_means[23], r_means[23]
    assert sky_s[2] - sky_s[0] > 2 * (sky_r[2] - sky_r[0])
    # Flat shading versus texture and sensor noise.
    assert _road_roughness(realistic) > 3 * _road_roughness(synthetic)
    # Different contents: more pedestrians in the city, more trucks in the simulator,
    # and the recording car's bonnet only in the realistic camera.
    assert r_freq[24] > 2 * s_freq[24]
    assert s_freq[27] > 2 * r_freq[27]
    assert s_freq[EGO_VEHICLE] == 0 and r_freq[EGO_VEHICLE] > 0.05
    bottom_centre = [lab[-1, lab.shape[1] // 2] for _, lab in realistic]
    assert all(v == EGO_VEHICLE for v in bottom_centre)


# --------------------------------------------------------------------------- cache and atomicity


def test_manifest_records_the_settings(dataset: scenes.DemoDataInfo) -> None:
    manifest = json.loads((dataset.root / MANIFEST_NAME).read_text())
    assert manifest["seed"] == 3 and manifest["size"] == list(SIZE)
    assert (manifest["n_source"], manifest["n_target_train"], manifest["n_target_val"]) == (4, 4, 3)
    assert manifest["generator_version"] == scenes.GENERATOR_VERSION
    assert load_demo_data_info(dataset.root) == dataset


def test_ensure_reuses_matching_data_and_regenerates_otherwise(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    first = ensure_demo_data(tmp_path, seed=1, size=SIZE, workers=1, **COUNTS)
    before = _all_files(tmp_path)

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("regenerated although the cached data match")

    with monkeypatch.context() as patch:
        patch.setattr(scenes, "generate_demo_data", must_not_run)
        assert ensure_demo_data(tmp_path, seed=1, size=SIZE, workers=1, **COUNTS) == first

    second = ensure_demo_data(tmp_path, seed=2, size=SIZE, workers=1, **COUNTS)
    assert second.seed == 2 and _all_files(tmp_path) != before

    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=MANIFEST_NAME):
        load_demo_data_info(tmp_path)
    third = ensure_demo_data(tmp_path, seed=2, size=SIZE, workers=1, **COUNTS)
    assert third == second and load_demo_data_info(tmp_path) == second

    (tmp_path / MANIFEST_NAME).unlink()
    assert load_demo_data_info(tmp_path) is None


def test_interrupted_generation_keeps_the_previous_dataset(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    previous = generate_demo_data(tmp_path, seed=1, size=SIZE, workers=1, **COUNTS)
    before = _all_files(tmp_path)
    real_write = scenes._write_sample
    calls = []

    def failing_write(*args: object) -> np.ndarray:
        calls.append(args)
        if len(calls) == 5:
            raise RuntimeError("interrupted")
        return real_write(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(scenes, "_write_sample", failing_write)
    with pytest.raises(RuntimeError, match="interrupted"):
        generate_demo_data(tmp_path, seed=2, size=SIZE, workers=1, **COUNTS)
    assert _all_files(tmp_path) == before  # no temporary folders or half datasets left
    assert load_demo_data_info(tmp_path) == previous


def test_fresh_interrupted_generation_leaves_nothing_that_looks_complete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_write(*args: object) -> np.ndarray:
        raise RuntimeError("interrupted")

    monkeypatch.setattr(scenes, "_write_sample", failing_write)
    with pytest.raises(RuntimeError):
        generate_demo_data(tmp_path, seed=0, size=SIZE, workers=1, **COUNTS)
    assert list(tmp_path.iterdir()) == []
    assert load_demo_data_info(tmp_path) is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"size": (16, 8)}, "size"),
    ({"n_source": 0}, "n_source"),
    ({"n_target_val": -1}, "n_target_val"),
    ({"workers": 0}, "workers"),
    ({"seed": -3}, "seed"),
])
def test_invalid_settings_are_rejected(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_demo_data(tmp_path, **{"size": SIZE, **COUNTS, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_unknown_domain_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown domain"):
        render_scene("cartoon", (64, 32), np.random.default_rng(0))  # type: ignore[arg-type]
