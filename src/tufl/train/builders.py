"""Build the data and objective of a training run from its config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tufl.config.schema import Config
from tufl.data.base import SegDataset
from tufl.data.class_index import ClassIndex
from tufl.data.factory import open_dataset
from tufl.data.photometric import photometric_batch
from tufl.data.prepared import attach_prepared
from tufl.data.samples import SourceSamples, TargetPairs
from tufl.data.views import resolve_strong_view
from tufl.losses import build_supervised_loss, build_unsupervised_loss
from tufl.mixing.mixer import CrossDomainMixer
from tufl.mixing.source_instances import SourceInstances
from tufl.models.segmentor import Segmentor
from tufl.train.distributed import DistContext
from tufl.train.objectives import SourceOnly, Stage1, Stage2


@dataclass
class TrainData:
    """Training datasets of a run and the per-rank micro-batch size."""

    source: SourceSamples
    target: TargetPairs
    micro_batch: int
    class_index: ClassIndex | None = None
    # dual_soft mixing draws a third source batch (the template) every step.
    needs_template: bool = False


def micro_batch_size(batch_size: int, world_size: int, accumulate: int) -> int:
    """Images per domain per rank per micro-step; the config batch size must split evenly."""
    parts = world_size * accumulate
    if batch_size % parts:
        raise ValueError(
            f"data.batch_size={batch_size} cannot be split over {world_size} process(es) x "
            f"train.accumulate={accumulate}; choose a multiple of {parts}"
        )
    return batch_size // parts


def open_training_datasets(cfg: Config) -> dict[str, SegDataset]:
    """The source and target datasets a run trains on (``tufl prepare-data`` prepares these)."""
    n, skip = cfg.model.num_classes, cfg.data.skip_bad_files
    return {"source": open_dataset(cfg.data.source, n, skip), "target": open_dataset(cfg.data.target, n, skip)}


def build_train_data(cfg: Config, ctx: DistContext, run_dir: Path) -> TrainData:
    bases = open_training_datasets(cfg)
    for domain, base in bases.items():  # load from prepared copies where usable ones exist
        line = attach_prepared(base, cfg.data.prepared_dir, domain)
        if ctx.is_main:
            print(f"[tufl] {line}", flush=True)
    source = SourceSamples(bases["source"], cfg.data.source_aug)
    target_base = bases["target"]
    views = cfg.data.target_views  # the strong view on the training device or the workers
    target = TargetPairs(target_base, views, resolve_strong_view(views.strong_view, ctx.device))
    if cfg.pseudo_labels.source == "offline":
        from tufl.train.pseudo_labels import OfflinePseudoLabels

        target = OfflinePseudoLabels(target, Path(cfg.pseudo_labels.dir),  # type: ignore[assignment]
                                     cfg.mix.confidence_threshold)
    micro = micro_batch_size(cfg.data.batch_size, ctx.world_size, cfg.train.accumulate)
    data = TrainData(source, target, micro)
    if cfg.experiment.mode == "stage2":
        if CrossDomainMixer.pastes_instances(cfg.mix):
            cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir / "cache"
            data.class_index = ClassIndex.build_or_load(source.base, cache, num_workers=max(cfg.data.num_workers, 1))
        data.needs_template = cfg.mix.mode == "dual_soft"
    return data


def build_objective(cfg: Config, model: Segmentor, data: TrainData,
                    pseudo_labeller: nn.Module | None) -> nn.Module:
    n = cfg.model.num_classes
    supervised = build_supervised_loss(n, cfg.loss.supervised)
    if cfg.experiment.mode == "source_only":
        return SourceOnly(supervised)
    heads = model.net.num_heads
    unsupervised = [build_unsupervised_loss(cfg.loss.unsupervised, n, cfg.loss.unsupervised_config()) for _ in range(heads)]
    if cfg.experiment.mode == "stage1":
        return Stage1(supervised, unsupervised, cfg.loss.lambda_u, cfg.train.concat_forward)
    fetch = SourceInstances(data.source.base, data.class_index) if data.class_index is not None else None
    photometric = cfg.data.target_views.photometric
    mixer = CrossDomainMixer(
        cfg.mix, n, fetch=fetch,
        photometric=lambda images, g: photometric_batch(images, photometric, g),
        available_classes=fetch.available() if fetch is not None else None,
    )
    return Stage2(supervised, unsupervised, cfg.loss.lambda_u, mixer, cfg.mix.lambda_mix,
                  pseudo_labeller, cfg.train.concat_forward, mix_all_heads=cfg.mix.loss_heads == "all")
