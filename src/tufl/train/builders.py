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
from tufl.data.rare_class import RareClassSampler, RareClassSourceSamples, class_labels
from tufl.data.samples import SourceSamples, TargetPairs
from tufl.data.views import resolve_strong_view
from tufl.losses import build_supervised_loss, build_unsupervised_loss
from tufl.mixing.mixer import CrossDomainMixer
from tufl.mixing.source_instances import SourceInstances
from tufl.models.segmentor import Segmentor
from tufl.train.distributed import DistContext
from tufl.train.mic import MaskedConsistency
from tufl.train.objectives import SourceOnly, Stage1, Stage2
from tufl.train.teacher import EMATeacher


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
    rcs = cfg.data.rare_class_sampling
    source = (RareClassSourceSamples(bases["source"], cfg.data.source_aug, rcs.min_crop_pixels) if rcs.enabled
              else SourceSamples(bases["source"], cfg.data.source_aug))
    target_base = bases["target"]
    views = cfg.data.target_views  # the strong view on the training device or the workers
    target = TargetPairs(target_base, views, resolve_strong_view(views.strong_view, ctx.device))
    if cfg.pseudo_labels.source == "offline":
        from tufl.train.pseudo_labels import OfflinePseudoLabels

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


def build_teacher(cfg: Config, model: Segmentor) -> EMATeacher | None:
    """The EMA teacher of the run, a copy of ``model`` as it starts (the stage-one checkpoint
    in stage two): for ``pseudo_labels.source: ema`` in stage two, and for MIC in stage one."""
    mode, source = cfg.experiment.mode, cfg.pseudo_labels.source
    wanted = (mode == "stage2" and source == "ema") or (mode == "stage1" and cfg.mic.enabled)
    return EMATeacher(model, cfg.pseudo_labels.ema_momentum) if wanted else None


def build_mic(cfg: Config, model: Segmentor) -> MaskedConsistency | None:
    """The MIC term (``mic.weight > 0``); hidden pixels take the network's input mean colour."""
    if not cfg.mic.enabled or cfg.experiment.mode == "source_only":
        return None
    convention = model.convention
    fill = tuple(reversed(convention.mean)) if convention.bgr else convention.mean
    photometric = cfg.data.target_views.photometric
    return MaskedConsistency(cfg.mic, fill, cfg.mix.confidence_threshold,  # type: ignore[arg-type]
                             photometric=lambda images, g: photometric_batch(images, photometric, g))


def build_objective(cfg: Config, model: Segmentor, data: TrainData,
                    pseudo_labeller: nn.Module | None) -> nn.Module:
    n = cfg.model.num_classes
    supervised = build_supervised_loss(n, cfg.loss.supervised)
    if cfg.experiment.mode == "source_only":
        return SourceOnly(supervised)
    heads = model.net.num_heads
    unsupervised = [build_unsupervised_loss(cfg.loss.unsupervised, n, cfg.loss.unsupervised_config()) for _ in range(heads)]
    teacher, mic = build_teacher(cfg, model), build_mic(cfg, model)
    if cfg.experiment.mode == "stage1":
        return Stage1(supervised, unsupervised, cfg.loss.lambda_u, cfg.train.concat_forward, teacher=teacher, mic=mic)
    fetch = SourceInstances(data.source.base, data.class_index) if data.class_index is not None else None
    photometric = cfg.data.target_views.photometric
    mixer = CrossDomainMixer(
        cfg.mix, n, fetch=fetch,
        photometric=lambda images, g: photometric_batch(images, photometric, g),
        available_classes=fetch.available() if fetch is not None else None,
    )
    return Stage2(supervised, unsupervised, cfg.loss.lambda_u, mixer, cfg.mix.lambda_mix,
                  pseudo_labeller, cfg.train.concat_forward, mix_all_heads=cfg.mix.loss_heads == "all",
                  teacher=teacher, mic=mic)
