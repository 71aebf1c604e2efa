"""Strong target views built on the training device: equal to the workers' views, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures import write_cityscapes

import runs
from tufl.runtime.typed_config import ConfigError, from_dict
from tufl.data import InfiniteLoader, build_dataset
from tufl.data.device_views import finish_target_batch
from tufl.data.photometric import PhotometricConfig
from tufl.data.samples import TargetPairs
from tufl.data.views import (
    AffineConfig,
    TargetViewConfig,
    affine_theta,
    make_target_pair,
    resolve_strong_view,
    sample_affine,
    warp_to_strong,
)
from tufl.runtime import checkpoint_files as ckpt
from tufl.train.engine import Trainer

CROP = (40, 24)


@pytest.fixture(scope="module")
def target_base(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    write_cityscapes(root, splits=("train",), cities=("aachen", "bochum"), n_per_city=3, size=(56, 32))
    return build_dataset("cityscapes", str(root), "train", 19)


def _batches(pairs: TargetPairs, count: int) -> list[dict]:
    loader = InfiniteLoader(pairs, batch_size=3, seed=11)
    return [next(loader) for _ in range(count)]


@pytest.mark.parametrize(("equalize_p", "channels_last"), [(1.0, False), (0.5, True)])
def test_device_batch_equals_the_workers_views_with_every_block_of_t_on(target_base, equalize_p, channels_last):
    cfg = TargetViewConfig(crop_size=CROP, scale_range=(1.0, 1.3),
                           photometric=PhotometricConfig(equalize_p=equalize_p, blur_sigma=(0.6, 1.2)))
    worker = _batches(TargetPairs(target_base, cfg, "worker"), 2)
    device = _batches(TargetPairs(target_base, cfg, "device"), 2)
    equalized = []
    for want, got in zip(worker, device):
        assert "photometric" not in want and "strong" not in got
        draws = got["photometric"]
        assert all(draws[name].all() for name in ("jitter", "shadow", "noise", "blur"))
        equalized += draws["equalize"].tolist()
        if channels_last:
            got["weak"] = got["weak"].contiguous(memory_format=torch.channels_last)
        finished = finish_target_batch(got, cfg)
        assert "photometric" not in finished and "photometric" in got  # the input batch is left alone
        assert torch.equal(finished["theta"], want["theta"]) and torch.equal(finished["weak"], want["weak"])
        assert finished["strong"].dtype == torch.uint8 and torch.equal(finished["strong"], want["strong"])
        assert finished["strong"].is_contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        # T did change the images: the geometry alone gives other pixels ...
        geometry, _ = warp_to_strong(want["weak"].float(), want["theta"])
        assert (geometry.round().to(torch.uint8) != want["strong"]).float().mean() > 0.5
        # ... and the noise field follows each sample's drawn seed.
        reseeded = dict(got, photometric={**draws, "noise_seed": draws["noise_seed"] + 1})
        assert not torch.equal(finish_target_batch(reseeded, cfg)["strong"], want["strong"])
    assert equalize_p == 1.0 and all(equalized) or 0 < sum(equalized) < len(equalized)


def test_finished_batch_is_returned_as_is_and_a_batch_without_draws_is_refused():
    batch = {"weak": torch.zeros(1, 3, 4, 4, dtype=torch.uint8), "strong": torch.ones(1, 3, 4, 4, dtype=torch.uint8),
             "theta": torch.zeros(1, 2, 3)}
    assert finish_target_batch(batch, TargetViewConfig()) is batch
    with pytest.raises(KeyError, match="photometric"):
        finish_target_batch({"weak": batch["weak"], "theta": batch["theta"]}, TargetViewConfig())


def test_worker_and_device_pairs_draw_the_same_values_from_the_sample_generator():
    image = np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    cfg = TargetViewConfig(crop_size=CROP)
    worker = make_target_pair(image, None, cfg, np.random.default_rng(4))
    device = make_target_pair(image, None, cfg, np.random.default_rng(4), strong_view="device")
    assert device.strong is None and device.params == worker.params
    assert np.array_equal(device.theta, worker.theta) and torch.equal(device.weak, worker.weak)
    assert all(value.shape == () and value.device.type == "cpu" for value in device.photometric.values())
    assert set(worker.fields()) == {"weak", "theta", "strong"}
    assert set(device.fields()) == {"weak", "theta", "photometric"}


def test_offline_pseudo_label_pairs_follow_the_strong_view_place(target_base, tmp_path):
    import io

    from PIL import Image
    from torch.utils.data import default_collate

    from tufl.objective.pseudo_label_files import Provenance, sample_files, write_file, write_manifest
    from tufl.objective.pseudo_labels import OfflinePseudoLabels

    rng = np.random.default_rng(3)
    files = {}
    for i in range(len(target_base)):
        height, width = target_base.load(i)[0].shape[:2]
        arrays = (rng.integers(0, 19, (height, width), dtype=np.uint8),
                  rng.integers(0, 65536, (height, width), dtype=np.uint16))
        for name, array in zip(sample_files(target_base, i), arrays):
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="PNG")
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            files[name] = write_file(tmp_path, name, buffer.getvalue())
    write_manifest(tmp_path, Provenance("stage1.pt", "0" * 64, {}), files)  # a complete folder
    cfg = TargetViewConfig(crop_size=CROP)
    keys = [(0, 5), (4, 6)]
    worker, device = (default_collate([OfflinePseudoLabels(TargetPairs(target_base, cfg, place), tmp_path, 0.5)[key]
                                       for key in keys]) for place in ("worker", "device"))
    assert "strong" not in device and "photometric" not in worker
    finished = finish_target_batch(device, cfg)
    assert finished.keys() == worker.keys()
    for key, value in worker.items():
        assert torch.equal(value, finished[key]) if isinstance(value, torch.Tensor) else value == finished[key], key


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_batched_warp_of_logits_and_masks_equals_each_sample_alone(mode):
    generator = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(2)
    size = (40, 24)
    thetas = torch.stack([torch.from_numpy(affine_theta(sample_affine(AffineConfig(), rng), size))
                          for _ in range(4)])
    logits = torch.randn(4, 19, size[1], size[0], generator=generator)
    maps = logits if mode == "bilinear" else logits.argmax(1, keepdim=True)
    warped, valid = warp_to_strong(maps, thetas, mode)
    assert (~valid).any() and valid.any()
    for i in range(4):
        alone, alone_valid = warp_to_strong(maps[i : i + 1], thetas[i : i + 1], mode)
        assert torch.equal(warped[i], alone[0]) and torch.equal(valid[i], alone_valid[0])


def _stage1_tree(scene_info, out, strong_view: str) -> dict:
    return runs.run_tree(scene_info, out, "stage1", iters=4, train={"checkpoint_every": 2},
                         data={"val": None, "target_views": {"strong_view": strong_view}})


def test_trainer_micro_batches_get_the_same_strong_view_from_either_place(scene_info, tmp_path):
    trainers = {place: Trainer(runs.config(_stage1_tree(scene_info, tmp_path / place, place)))
                for place in ("worker", "device")}
    assert {place: t.data.target.strong_view for place, t in trainers.items()} == {"worker": "worker",
                                                                                    "device": "device"}
    assert "strong" not in trainers["device"].data.target[(0, 0)]
    (_, worker), (_, device) = (next(t._micro_batches()) for t in trainers.values())
    assert worker.keys() == device.keys() and "photometric" not in device
    for key, value in worker.items():
        assert torch.equal(value, device[key]) if isinstance(value, torch.Tensor) else value == device[key], key


def test_training_with_device_views_resumes_bit_for_bit(scene_info, tmp_path, monkeypatch):
    Trainer(runs.config(_stage1_tree(scene_info, tmp_path / "straight", "device"))).run()
    killed = _stage1_tree(scene_info, tmp_path / "killed", "device")
    runs.run_killed(monkeypatch, 3, lambda: Trainer(runs.config(killed)).run())
    Trainer(runs.config(killed), resume=True).run()
    a, resumed = (ckpt.load_checkpoint(tmp_path / name / "checkpoint_last.pt") for name in ("straight", "killed"))
    assert a["iteration"] == resumed["iteration"] == 4 and resumed["data"] == a["data"]
    for group in ("model", "losses", "optimizer"):
        assert a[group].keys() == resumed[group].keys()
    for group in ("model", "losses"):
        for name, value in a[group].items():
            assert torch.equal(value, resumed[group][name]), f"{group}.{name}"
    moments = [[s["momentum_buffer"] for s in state["optimizer"]["state"].values()] for state in (a, resumed)]
    assert moments[0] and all(torch.equal(x, y) for x, y in zip(*moments))


def test_strong_view_setting_is_validated_and_resolved(target_base):
    assert TargetViewConfig().strong_view == "auto"
    assert from_dict(TargetViewConfig, {"strong_view": "device"}).strong_view == "device"
    with pytest.raises(ConfigError, match="strong_view"):
        from_dict(TargetViewConfig, {"strong_view": "gpu"})
    assert TargetViewConfig(strong_view="gpu").problems() == [  # type: ignore[arg-type]
        "strong_view: must be 'auto', 'worker' or 'device', got 'gpu'"]
    assert resolve_strong_view("auto", torch.device("cuda", 0)) == "device"
    assert resolve_strong_view("auto", "cpu") == "worker"
    assert resolve_strong_view("device", "cpu") == "device" and resolve_strong_view("worker", "cuda") == "worker"
    with pytest.raises(ValueError, match="strong_view"):
        resolve_strong_view("gpu", "cpu")  # type: ignore[arg-type]
    # Outside training "auto" means the workers; an explicit setting is followed.
    assert TargetPairs(target_base, TargetViewConfig(crop_size=CROP)).strong_view == "worker"
    assert TargetPairs(target_base, TargetViewConfig(crop_size=CROP, strong_view="device")).strong_view == "device"
    with pytest.raises(ValueError, match="strong_view"):
        make_target_pair(np.zeros((8, 8, 3), np.uint8), None, TargetViewConfig(crop_size=(8, 8)),
                         np.random.default_rng(0), strong_view="auto")  # type: ignore[arg-type]
