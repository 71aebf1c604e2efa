"""Build the data, objective and validation of a training run from its config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from tufl.config.schema import Config, DatasetConfig
from tufl.data.base import SegDataset
from tufl.data.class_index import ClassIndex
from tufl.data.factory import build_dataset
from tufl.data.loader import eval_loader
from tufl.data.photometric import photometric_batch
from tufl.data.samples import EvalSamples, SourceSamples, TargetPairs
from tufl.evaluation.evaluate import evaluate
from tufl.evaluation.metrics import EvalResult
from tufl.losses import build_supervised_loss, build_unsupervised_loss
from tufl.mixing.mixer import CrossDomainMixer
from tufl.models.segmentor import Segmentor
from tufl.train.distributed import DistContext
from tufl.train.objectives import SourceOnly, Stage1, Stage2


def open_dataset(ds: DatasetConfig, num_classes: int, skip_bad_files: bool) -> SegDataset:
    return build_dataset(ds.name, ds.root, ds.split, num_classes, list_file=ds.list_file,
                         resize=ds.resize, skip_bad_files=skip_bad_files, interpolation=ds.interpolation)


@dataclass
class TrainData:
    """Training datasets of a run and the per-rank micro-batch size."""

    source: SourceSamples
    target: TargetPairs
    micro_batch: int
    class_index: ClassIndex | None = None
    # dual_soft mixing draws a third source batch (the template) every step.
    needs_template: bool = False

    def skipped_files(self) -> int:
        return sum(getattr(d.base, "skipped", 0) for d in (self.source, self.target))


def micro_batch_size(batch_size: int, world_size: int, accumulate: int) -> int:
    """Images per domain per rank per micro-step; the config batch size must split evenly."""
    parts = world_size * accumulate
    if batch_size % parts:
        raise ValueError(
            f"data.batch_size={batch_size} cannot be split over {world_size} process(es) x "
            f"train.accumulate={accumulate}; choose a multiple of {parts}"
        )
    return batch_size // parts


def build_train_data(cfg: Config, ctx: DistContext, run_dir: Path) -> TrainData:
    n = cfg.model.num_classes
    skip = cfg.data.skip_bad_files
    source = SourceSamples(open_dataset(cfg.data.source, n, skip), cfg.data.source_aug)
    target_base = open_dataset(cfg.data.target, n, skip)
    target = TargetPairs(target_base, cfg.data.target_views)
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


class SourceInstances:
    """``fetch(class_id, generator)`` for long-tail pasting: a random source image
    containing the class, at the source's training scale (full resized image)."""

    def __init__(self, dataset: SegDataset, index: ClassIndex) -> None:
        self.dataset = dataset
        self.lists = [index.images_with(c) for c in range(index.num_classes)]

    def available(self) -> Tensor:
        return torch.tensor([len(images) > 0 for images in self.lists])

    def __call__(self, class_id: int, generator: torch.Generator) -> tuple[Tensor, Tensor] | None:
        images = self.lists[class_id]
        if not images:
            return None
        pick = images[int(torch.randint(len(images), (1,), generator=generator))]
        image, label = self.dataset.load(pick)
        assert label is not None
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous(), torch.from_numpy(label.astype(np.int64))


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


class Validation:
    """Periodic mIoU on the labelled target split (sharded over ranks)."""

    def __init__(self, cfg: Config, ctx: DistContext) -> None:
        assert cfg.data.val is not None
        self.cfg = cfg
        self.ctx = ctx
        self.dataset = EvalSamples(open_dataset(cfg.data.val, cfg.model.num_classes, cfg.data.skip_bad_files))

    def run(self, model: Segmentor) -> EvalResult:
        e = self.cfg.eval
        loader = eval_loader(self.dataset, e.batch_size, e.num_workers, self.ctx.rank, self.ctx.world_size)
        return evaluate(model, loader, self.cfg.model.num_classes, self.ctx.device, scales=e.scales,
                        flip=e.flip, window=e.window, stride=e.stride, amp=e.amp,
                        progress=self.ctx.is_main and self.cfg.train.progress)


def build_validation(cfg: Config, ctx: DistContext) -> Validation | None:
    return Validation(cfg, ctx) if cfg.data.val is not None else None
