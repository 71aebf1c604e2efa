"""The typed schema of a tufl config file: one dataclass per section.

Sections owned by a subsystem are defined next to it (``ModelConfig`` with the
networks, ``SourceAugConfig``/``TargetViewConfig`` with the transforms,
``LossConfig`` with the losses, ``MixConfig`` with the mixing, ``OptimConfig``
with the optimiser); this module assembles them and checks the rules that span
sections. ``docs/config.md`` documents every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tufl.data.transforms import SourceAugConfig
from tufl.data.views import TargetViewConfig
from tufl.losses.config import LossConfig
from tufl.mixing.config import MixConfig
from tufl.models.build import ModelConfig
from tufl.train.optim import OptimConfig

Mode = Literal["source_only", "stage1", "stage2"]


@dataclass
class ExperimentConfig:
    """Run identity: name, output folder, seed, training mode, device."""

    # Name of the run (default output folder runs/<name>).
    name: str = "experiment"
    # Folder of checkpoints, logs and the resolved config; null = runs/<name>.
    output_dir: str | None = None
    # Seed of model initialisation, data order and augmentation, and mixing draws.
    seed: int = 0
    # source_only: supervised only; stage1: + TUFL; stage2: + cross-domain mixing.
    mode: Mode = "stage1"
    # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("runs") / self.name


@dataclass
class DatasetConfig:
    """One dataset in its official layout."""

    # Dataset format: gta5, synthia, cityscapes or crosscity (official layouts).
    name: Literal["gta5", "synthia", "cityscapes", "crosscity"] = "cityscapes"
    # Folder the official download unpacked to.
    root: str = "data/cityscapes"
    # gta5/synthia: train; cityscapes: train/val/test; crosscity: <City>/train or <City>/test.
    split: str = "train"
    # Text file of sample names (ADVENT/DACS split files); null = every file found.
    list_file: str | None = None
    # (width, height) applied when loading; null = native size.
    resize: tuple[int, int] | None = None
    # Image resampling of the resize (labels always use nearest neighbour).
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"

    def problems(self) -> list[str]:
        if self.resize is not None and min(self.resize) < 1:
            return ["resize: width and height must be >= 1"]
        return []


@dataclass
class DataConfig:
    """Datasets, batch size and augmentation."""

    # Labelled source domain.
    source: DatasetConfig = field(default_factory=lambda: DatasetConfig("gta5", "data/GTA5", "train", resize=(1280, 720)))
    # Unlabelled target domain (its labels, if any, are never used for training).
    target: DatasetConfig = field(default_factory=lambda: DatasetConfig("cityscapes", "data/cityscapes", "train", resize=(1024, 512)))
    # Labelled target split for validation during training and `tufl evaluate`;
    # null = no validation.
    val: DatasetConfig | None = field(default_factory=lambda: DatasetConfig("cityscapes", "data/cityscapes", "val", resize=(1024, 512)))
    # Images per domain per optimiser step, over all GPUs and accumulation steps.
    batch_size: int = 2
    # Data-loading worker processes per GPU.
    num_workers: int = 4
    # Skip unreadable samples (counted and reported) instead of stopping.
    skip_bad_files: bool = False
    # Source augmentation: random scale, crop (width, height), flip, optional jitter.
    source_aug: SourceAugConfig = field(default_factory=SourceAugConfig)
    # Target weak view (scale, crop, flip) and strong view (photometric T + affine A).
    target_views: TargetViewConfig = field(default_factory=TargetViewConfig)
    # Where the class -> images index of the source (long-tail pasting) is cached;
    # null = <output_dir>/cache.
    cache_dir: str | None = None

    def problems(self) -> list[str]:
        out = []
        if self.batch_size < 1:
            out.append("batch_size: must be >= 1")
        if self.num_workers < 0:
            out.append("num_workers: must be >= 0")
        return out


@dataclass
class PseudoLabelConfig:
    """Where stage two gets target pseudo-labels from."""

    # "online": the frozen stage-one model predicts them every step;
    # "offline": read files written by `tufl pseudo-label` from `dir`.
    source: Literal["online", "offline"] = "online"
    # Folder of <name>_pseudo.png / <name>_conf.png files (offline source).
    dir: str | None = None

    def problems(self) -> list[str]:
        if self.source == "offline" and not self.dir:
            return ["dir: offline pseudo-labels need the folder written by `tufl pseudo-label`"]
        return []


@dataclass
class TrainConfig:
    """The training loop."""

    # Optimiser steps of the run (the poly schedule ends here).
    iters: int = 40000
    # Micro-batches per optimiser step (gradient accumulation).
    accumulate: int = 1
    # Mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling).
    amp: bool = True
    # channels_last memory format (faster convolutions on recent GPUs).
    channels_last: bool = False
    # Clip the global gradient norm to this value; null = off.
    grad_clip: float | None = None
    # Source, weak and strong views through the network in one forward pass.
    concat_forward: bool = True
    # Convert BatchNorm to SyncBatchNorm under multi-GPU training.
    sync_bn: bool = False
    # torch.use_deterministic_algorithms (bitwise reproducible on CPU; slower on GPU).
    deterministic: bool = False
    # Log averaged losses every N iterations (JSONL, TensorBoard, progress bar).
    log_every: int = 10
    # Write checkpoint_last.pt every N iterations (and at the end).
    checkpoint_every: int = 1000
    # Checkpoints kept: checkpoint_last.pt and its keep_checkpoints - 1 previous versions
    # (checkpoint_last.1.pt the newest); --resume falls back to them when the last one is damaged.
    keep_checkpoints: int = 2
    # Validate on data.val every N iterations (0 = only at the end).
    val_every: int = 2000
    # Stop after this many non-finite losses in a row.
    max_nonfinite: int = 20
    # Save a PNG grid of the mixed stage-two inputs every N iterations (0 = off).
    inspect_every: int = 0
    # Show a progress bar (rank 0).
    progress: bool = True
    # Also write TensorBoard scalars when the tensorboard package is installed.
    tensorboard: bool = True

    def problems(self) -> list[str]:
        out = []
        for name in ("iters", "accumulate", "log_every", "checkpoint_every", "keep_checkpoints", "max_nonfinite"):
            if getattr(self, name) < 1:
                out.append(f"{name}: must be >= 1")
        for name in ("val_every", "inspect_every"):
            if getattr(self, name) < 0:
                out.append(f"{name}: must be >= 0")
        if self.grad_clip is not None and self.grad_clip <= 0:
            out.append("grad_clip: must be > 0 or null")
        return out


@dataclass
class EvalConfig:
    """Inference settings for validation and `tufl evaluate`."""

    # Test scales; several = multi-scale inference (e.g. 0.5 ... 1.75).
    scales: tuple[float, ...] = (1.0,)
    # Average with the horizontally flipped input.
    flip: bool = False
    # Sliding-window size (height, width) and stride; null = whole image at once.
    window: tuple[int, int] | None = None
    # Sliding-window stride (height, width); set together with window.
    stride: tuple[int, int] | None = None
    # Mixed precision on CUDA.
    amp: bool = True
    # Evaluation images per forward pass and loader workers.
    batch_size: int = 1
    num_workers: int = 2

    def problems(self) -> list[str]:
        out = []
        if not self.scales or min(self.scales) <= 0:
            out.append("scales: needs at least one scale, all > 0")
        if (self.window is None) != (self.stride is None):
            out.append("window: window and stride go together")
        if self.batch_size < 1:
            out.append("batch_size: must be >= 1")
        return out


@dataclass
class Config:
    """A whole experiment."""

    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    pseudo_labels: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def problems(self) -> list[str]:
        out = []
        if self.data.batch_size % self.train.accumulate:
            out.append(
                f"train.accumulate: data.batch_size={self.data.batch_size} is not divisible "
                f"by train.accumulate={self.train.accumulate}"
            )
        if self.experiment.mode == "stage2" and not self.model.pretrained:
            out.append("model.pretrained: stage2 starts from a stage-one checkpoint; set its path")
        if self.experiment.mode == "source_only" and self.loss.unsupervised != "none":
            out.append("loss.unsupervised: source_only mode trains no unsupervised loss; set it to none")
        if self.experiment.mode != "source_only" and self.loss.unsupervised == "none":
            out.append(f"loss.unsupervised: mode {self.experiment.mode} needs an unsupervised loss")
        if self.pseudo_labels.source == "offline" and self.experiment.mode != "stage2":
            out.append("pseudo_labels.source: offline pseudo-labels are only used by stage2")
        return out
