"""The Cityscapes -> ACDC / Dark Zurich configs and the GTA5 -> BDD100K / Mapillary evaluation
configs: they load with the right data, build their datasets on generated data, and one trains."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_layouts import write_acdc, write_bdd100k, write_dark_zurich, write_mapillary
from fixtures import write_cityscapes, write_gta5

from tufl.runtime.typed_config import load_config
from tufl.config.schema import Config
from tufl.data.registry import open_dataset

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ADAPTATION = {"cityscapes_acdc": ("acdc", "data/acdc"), "cityscapes_darkzurich": ("dark_zurich", "data/dark_zurich")}
EVALUATION = {"gta5_bdd100k": ("bdd100k", "data/bdd100k"), "gta5_mapillary": ("mapillary", "data/mapillary")}
NEW_CONFIGS = sorted(p for folder in (*ADAPTATION, *EVALUATION) for p in (CONFIGS / folder).glob("*.yaml"))


def test_every_benchmark_config_is_there():
    names = {f"{p.parent.name}/{p.stem}" for p in NEW_CONFIGS}
    expected = {f"{f}/{a}_{s}" for f in ADAPTATION for a in ("deeplabv2", "bisenet")
                for s in ("source_only", "stage1", "stage2")}
    expected |= {f"{f}/{a}_stage2_eval" for f in EVALUATION for a in ("deeplabv2", "bisenet")}
    assert names == expected


@pytest.mark.parametrize("path", NEW_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_names_the_benchmark_data(path):
    cfg = load_config(Config, path)
    data = cfg.data
    assert cfg.model.num_classes == 19 and cfg.experiment.output_dir == f"runs/{path.parent.name}/{path.stem}"
    if path.parent.name in ADAPTATION:
        name, root = ADAPTATION[path.parent.name]
        assert (data.source.name, data.source.root, data.source.split) == ("cityscapes", "data/cityscapes", "train")
        assert (data.target.name, data.target.root, data.target.split) == (name, root, "train")
        assert (data.val.name, data.val.root, data.val.split) == (name, root, "val")
        stage = path.stem.split("_", 1)[1]
        if stage != "source_only":
            assert cfg.model.pretrained == f"runs/{path.parent.name}/{path.stem.split('_')[0]}_" + (
                "source_only" if stage == "stage1" else "stage1") + "/checkpoint_last.pt"
    else:
        name, root = EVALUATION[path.parent.name]
        reference = load_config(Config, CONFIGS / "gta5_cityscapes" / path.name.replace("_eval", ""))
        # a GTA5 -> Cityscapes stage-two model (same network, classes and training data) ...
        assert cfg.model == reference.model and cfg.data.source == reference.data.source
        # ... scored on the unseen benchmark
        assert (data.val.name, data.val.root, data.val.split) == (name, root, "val")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("benchmarks")
    write_cityscapes(root / "cityscapes", splits=("train",), n_per_city=2)
    write_gta5(root / "gta5", n=2, mismatched=())
    write_acdc(root / "acdc")
    write_dark_zurich(root / "dark_zurich")
    write_bdd100k(root / "bdd100k")
    write_mapillary(root / "mapillary")
    return {"cityscapes": root / "cityscapes", "gta5": root / "gta5", "acdc": root / "acdc",
            "dark_zurich": root / "dark_zurich", "bdd100k": root / "bdd100k", "mapillary": root / "mapillary"}


def _pointed_at(generated: dict[str, Path], path: Path, extra: tuple[str, ...] = ()) -> Config:
    cfg = load_config(Config, path)
    overrides = [f"data.{part}.root={generated[getattr(cfg.data, part).name]}" for part in ("source", "target", "val")]
    return load_config(Config, path, [*overrides, *extra])


@pytest.mark.parametrize("path", NEW_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_builds_its_datasets(generated, path):
    cfg = _pointed_at(generated, path)
    source = open_dataset(cfg.data.source, cfg.model.num_classes, False)
    target = open_dataset(cfg.data.target, cfg.model.num_classes, False)
    val = open_dataset(cfg.data.val, cfg.model.num_classes, False)
    assert source.has_labels and val.has_labels and len(val) > 0
    image, label = val.load(0)
    assert image.shape[:2] == label.shape == (cfg.data.val.resize[1], cfg.data.val.resize[0])
    if path.parent.name in ADAPTATION:
        assert len(target) == {"acdc": 4, "dark_zurich": 3}[target.name]  # ACDC: four conditions; DZ: night only


def test_cityscapes_to_acdc_bisenet_stage1_trains_two_iterations(generated, tmp_path):
    from tufl.train.engine import train
    from tufl.runtime.run_log import read_metrics

    out = tmp_path / "run"
    cfg = _pointed_at(generated, CONFIGS / "cityscapes_acdc" / "bisenet_stage1.yaml", (
        f"experiment.output_dir={out}", "experiment.device=cpu", "model.pretrained=null",
        "data.source.resize=null", "data.target.resize=null", "data.val.resize=null", "data.num_workers=0",
        "data.source_aug.crop_size=[64, 32]", "data.target_views.crop_size=[64, 32]", "eval.num_workers=0",
        "train.iters=2", "train.log_every=1", "train.checkpoint_every=2", "train.val_every=2",
        "train.progress=false", "train.tensorboard=false",
    ))
    train(cfg)
    assert [r["iter"] for r in read_metrics(out, "train")] == [1, 2]
    val = read_metrics(out, "val")
    assert [v["iter"] for v in val] == [2] and 0.0 <= val[0]["miou"] <= 1.0
    assert (out / "checkpoint_last.pt").is_file()
