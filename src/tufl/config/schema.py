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

from tufl.data.rare_class import RareClassSamplingConfig
from tufl.data.transforms import SourceAugConfig
from tufl.data.views import TargetViewConfig
from tufl.losses.config import LossConfig
from tufl.mixing.config import MixConfig
from tufl.train.mic import MicConfig
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
    """One dataset: an official layout, or your own data (docs/own-data.md)."""

    # Dataset format: an official layout (gta5, synthia, cityscapes, crosscity, acdc,
    # dark_zurich, bdd100k, mapillary) or your own data (folder: images with or without
    # label maps and a class definition file; images: unlabelled images, any sizes).
    name: Literal["gta5", "synthia", "cityscapes", "crosscity", "acdc", "dark_zurich", "bdd100k",
                  "mapillary", "folder", "images"] = "cityscapes"
    # Folder the official download unpacked to (folder/images: the folder the paths below are relative to).
    root: str = "data/cityscapes"
    # gta5/synthia: train; cityscapes: train/val/test; crosscity: <City>/train or <City>/test.
    split: str = "train"
    # Text file of sample names (ADVENT/DACS split files); null = every file found.
    # folder/images: lines "image [label]", paths relative to root.
    list_file: str | None = None
    # (width, height) applied when loading; null = native size.
    resize: tuple[int, int] | None = None
    # Image resampling of the resize (labels always use nearest neighbour).
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    # folder/images: image folders or globs relative to root (e.g. ["frames/**/*.jpg"]); empty = root.
    images: tuple[str, ...] = ()
    # folder: label folder relative to root; null = unlabelled.
    labels: str | None = None
    # folder: the label file of an image: "stem" (same relative path, .png) or a suffix
    # substitution "OLD->NEW" (e.g. "_leftImg8bit.png->_gtFine_labelIds.png").
    label_rule: str = "stem"
    # Class definition file (YAML, docs/own-data.md). folder/images: raw label value -> train
    # id, name, colour, and ignored values; official datasets: its from_source section maps
    # their classes to yours (e.g. GTA5's 19 classes to 7 merged ones).
    classes: str | None = None

    def problems(self) -> list[str]:
        out = []
        if self.resize is not None and min(self.resize) < 1:
            out.append("resize: width and height must be >= 1")
        own_data = self.name in ("folder", "images")
        for key, default in (("images", ()), ("labels", None), ("label_rule", "stem")):
            if not own_data and getattr(self, key) != default:
                out.append(f"{key}: only folder and images datasets take it (name is {self.name})")
        if self.name == "images" and self.labels is not None:
            out.append("labels: an images dataset is unlabelled; use name: folder for images with label maps")
        if self.name == "folder" and self.labels is not None and not self.classes:
            out.append("classes: a folder dataset with labels needs a class definition file (docs/own-data.md)")
        if self.images and self.list_file:
            out.append("images: give either images (folders/globs) or list_file, not both")
        rule = self.label_rule
        if rule != "stem" and (rule.count("->") != 1 or not all(rule.split("->"))):
            out.append(f"label_rule: must be 'stem' or 'OLD->NEW' (e.g. '_leftImg8bit.png->_gtFine_labelIds.png'), "
                       f"got {rule!r}")
        return out


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
    # Training: skip unreadable or inconsistent samples (each named once, counted in
    # metrics.jsonl and bad_samples.json) instead of stopping. Validation never skips
    # (see eval.skip_bad_files).
    skip_bad_files: bool = True
    # Training stops with an error once more than this fraction of a domain's samples is bad.
    max_bad_fraction: float = 0.01
    # Source augmentation: random scale, crop (width, height), flip, optional jitter.
    source_aug: SourceAugConfig = field(default_factory=SourceAugConfig)
    # Target weak view (scale, crop, flip) and strong view (photometric T + affine A).
    target_views: TargetViewConfig = field(default_factory=TargetViewConfig)
    # Where the class -> images index of the source (long-tail pasting, rare-class
    # sampling) is cached; null = <output_dir>/cache.
    cache_dir: str | None = None
    # Rare-class sampling of the source images (DAFormer, Hoyer et al., CVPR 2022).
    rare_class_sampling: RareClassSamplingConfig = field(default_factory=RareClassSamplingConfig)
    # Where `tufl prepare-data` writes prepared copies of the training datasets (every
    # sample stored at its training size: loading is then several times faster) and where
    # training looks for them; relative paths are relative to the working directory,
    # like dataset roots. null = never use prepared copies.
    prepared_dir: str | None = "data/prepared"

    def problems(self) -> list[str]:
        out = []
        if self.batch_size < 1:
            out.append("batch_size: must be >= 1")
        if self.num_workers < 0:
            out.append("num_workers: must be >= 0")
        if not 0 <= self.max_bad_fraction <= 1:
            out.append("max_bad_fraction: must be in [0, 1]")
        return out


@dataclass
class PseudoLabelConfig:
    """Where stage two gets target pseudo-labels from."""

    # "online": the frozen stage-one model predicts them every step;
    # "offline": read files written by `tufl pseudo-label` from `dir`;
    # "ema": a mean teacher (DACS, Tranheden et al. 2021; DAFormer, Hoyer et al. 2022):
    # an exponential moving average of the student, starting from the stage-one
    # checkpoint and updated after every optimiser step. It runs in training mode with
    # dropout/DropPath off, as theirs: frozen BatchNorm layers use their running
    # statistics, others the batch's. Its pixels are weighted by the confidence rule of
    # mix.confidence_threshold (0.968, as theirs). Checkpointed and restored exactly.
    source: Literal["online", "offline", "ema"] = "online"
    # Folder of <name>_pseudo.png / <name>_conf.png files (offline source).
    dir: str | None = None
    # EMA teacher momentum alpha (source ema, and the stage-one MIC teacher): after step k,
    # teacher = a * teacher + (1 - a) * student with a = min(1 - 1 / (k + 1), alpha), a
    # plain average of the weights seen until the moving average is the better one.
    # DAFormer and MIC: 0.999; DACS: 0.99.
    ema_momentum: float = 0.999

    def problems(self) -> list[str]:
        out = []
        if self.source == "offline" and not self.dir:
            out.append("dir: offline pseudo-labels need the folder written by `tufl pseudo-label`")
        if not 0.0 <= self.ema_momentum < 1.0:
            out.append(f"ema_momentum: must be in [0, 1), got {self.ema_momentum}")
        return out


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
    # torch.compile the segmentor's training forward (checkpoints, validation and inference
    # use the plain module). Off by default until measured faster and stable on a GPU: the
    # first iterations then compile for minutes, and a new input shape compiles again.
    compile: bool = False
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
    # Signals that stop the run cleanly: finish the iteration, write checkpoint_last.pt,
    # exit with status 3 (a second signal exits at once); [] = default signal handling.
    stop_signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")
    # Resume from the run folder's checkpoint when it holds one of the same config (as
    # `--resume auto`); a checkpoint of another config is refused, naming the differing keys.
    auto_resume: bool = False
    # Validate on data.val every N iterations (0 = only at the end).
    val_every: int = 2000
    # Stop after this many non-finite steps in a row (loss on any rank, or gradients; each is
    # skipped without a trace). Checked when a log line is written (no host read per step):
    # the run stops at the first log line after max_nonfinite skipped steps in a row.
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
        from tufl.train.preemption import signal_number

        for name in self.stop_signals:
            try:
                signal_number(name)
            except ValueError as error:
                out.append(f"stop_signals: {error}")
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
    # Leave unreadable validation samples out (each named, the count reported) instead of
    # stopping with an error naming the file; the mIoU is then over fewer images.
    skip_bad_files: bool = False

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
    mic: MicConfig = field(default_factory=MicConfig)
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
        if self.pseudo_labels.source in ("offline", "ema") and self.experiment.mode != "stage2":
            out.append(f"pseudo_labels.source: {self.pseudo_labels.source} pseudo-labels are only used by stage2")
        if self.mic.weight > 0 and self.experiment.mode == "source_only":
            out.append("mic.weight: MIC trains on target images; source_only mode has none (set it to 0)")
        return out
