"""Build the data and the validation of a training run from its config (the objective:
:func:`tufl.objective.build_objective`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tufl.data.base import SegDataset
from tufl.data.class_index import ClassIndex
from tufl.data.class_set import ModelClasses, run_classes
from tufl.data.prepared import attach_prepared
from tufl.data.rare_class import RareClassSampler, RareClassSourceSamples, class_labels
from tufl.data.registry import open_dataset
from tufl.data.samples import SourceSamples, TargetPairs
from tufl.data.views import resolve_strong_view
from tufl.evaluation.validation import Validation
from tufl.mixing.mixer import CrossDomainMixer
from tufl.objective.pseudo_labels import OfflinePseudoLabels
from tufl.runtime.distributed import DistContext
from tufl.runtime.errors import ConfigError
from tufl.train.config import RunConfig


@dataclass
class TrainData:
    """Training datasets of a run and the per-rank micro-batch size."""

    source: SourceSamples
    target: TargetPairs
    micro_batch: int
    class_index: ClassIndex | None = None
    # dual_soft mixing draws a third source batch (the template) every step.
    needs_template: bool = False
    # data.rare_class_sampling: the class-first draws of the source stream (None: shuffled passes).
    rare_classes: RareClassSampler | None = None


def micro_batch_size(batch_size: int, world_size: int, accumulate: int) -> int:
    """Images per domain per rank per micro-step; the config batch size must split evenly."""
    parts = world_size * accumulate
    if batch_size % parts:
        raise ValueError(
            f"data.batch_size={batch_size} cannot be split over {world_size} process(es) x "
            f"train.accumulate={accumulate}; choose a multiple of {parts}"
        )
    return batch_size // parts


def open_training_datasets(cfg: RunConfig) -> dict[str, SegDataset]:
    """The source and target datasets a run trains on (``tufl prepare-data`` prepares these)."""
    n, skip = cfg.model.num_classes, cfg.data.skip_bad_files
    limit = cfg.data.max_image_pixels
    return {"source": open_dataset(cfg.data.source, n, skip, limit), "target": open_dataset(cfg.data.target, n, skip, limit)}


def build_train_data(cfg: RunConfig, ctx: DistContext, run_dir: Path) -> TrainData:
    bases = open_training_datasets(cfg)
    for domain, base in bases.items():  # load from prepared copies where usable ones exist
        line = attach_prepared(base, cfg.data.prepared_dir, domain)
        if ctx.is_main:
            print(f"[tufl] {line}", flush=True)
    rcs = cfg.data.rare_class_sampling
    source = (RareClassSourceSamples(bases["source"], cfg.data.source_aug, rcs.min_crop_pixels) if rcs.enabled
              else SourceSamples(bases["source"], cfg.data.source_aug))
    target_base = bases["target"]
    views = cfg.data.target_views  # the strong view on the training device or the workers
    target = TargetPairs(target_base, views, resolve_strong_view(views.strong_view, ctx.device))
    if cfg.pseudo_labels.source == "offline":
        target = OfflinePseudoLabels(target, Path(cfg.pseudo_labels.dir),  # type: ignore[assignment]
                                     cfg.mix.confidence_threshold)
    micro = micro_batch_size(cfg.data.batch_size, ctx.world_size, cfg.train.accumulate)
    data = TrainData(source, target, micro)
    pastes = cfg.experiment.mode == "stage2" and CrossDomainMixer.pastes_instances(cfg.mix)
    if pastes or rcs.enabled:
        cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir / "cache"
        index = ClassIndex.build_or_load(source.base, cache, num_workers=max(cfg.data.num_workers, 1))
        data.class_index = index if pastes else None
        if rcs.enabled:
            data.rare_classes = RareClassSampler(index, rcs.temperature, rcs.min_pixels)
            if ctx.is_main:
                print(f"[tufl] {data.rare_classes.describe(class_labels(source.base))}", flush=True)
    if cfg.experiment.mode == "stage2":
        data.needs_template = cfg.mix.mode == "dual_soft"
    return data


def build_validation(cfg: RunConfig, ctx: DistContext) -> Validation | None:
    """The run's periodic validation, or None when the config has no ``data.val``."""
    if cfg.data.val is None:
        return None
    return Validation(cfg.data.val, cfg.model.num_classes, cfg.eval, ctx, progress=cfg.train.progress,
                      max_image_pixels=cfg.data.max_image_pixels)


def build_classes(cfg: RunConfig) -> ModelClasses:
    """The classes the run's model predicts (its class definition files, else the Cityscapes
    set), checked against ``model.num_classes``."""
    classes = run_classes([(key, getattr(cfg.data, key)) for key in ("source", "target", "val")],
                          cfg.model.num_classes)
    if classes.num_classes != cfg.model.num_classes:
        raise ConfigError([f"model.num_classes: {cfg.model.num_classes}, but the class file {classes.origin} defines "
                           f"{classes.num_classes} classes; leave model.num_classes out of the config (it is derived "
                           "from the class file) or make the two agree"])
    return classes
