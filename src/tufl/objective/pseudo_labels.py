"""Pseudo-labels of the target images: where a run gets them, files on disk, training from files.

:class:`PseudoLabelSource` gives the terms that need them (the mixing, MIC) the weak
view's hard labels and confidences: from the target batch (``offline`` files), an EMA
teacher (``ema``; in stage one always, as MIC's teacher), or a frozen copy of the
stage-one model (``online``).

``tufl pseudo-label`` writes, for every image of a target split (at the dataset's
resize), ``<name>_pseudo.png`` (8-bit train ids) and ``<name>_conf.png`` (16-bit
confidence, ``round(conf * 65535)``) into a folder, then its manifest (where they come
from, each file's size and CRC-32: :mod:`tufl.objective.pseudo_label_files`). With
``pseudo_labels.source: offline`` stage two reads them instead of running the
frozen stage-one model every step; the weak-view crop/scale/flip of each target
sample is applied to them exactly as to the image (nearest neighbour).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset

from tufl.data.base import SegDataset
from tufl.data.io import BadFileError
from tufl.data.labels import IGNORE_INDEX
from tufl.data.samples import SampleKey, TargetPairs, check_key, key_rng, skipped_text
from tufl.data.transforms import image_to_tensor
from tufl.data.views import make_target_pair
from tufl.models.build import build_model
from tufl.objective.pseudo_label_files import (
    FileEntry,
    Provenance,
    check_folder,
    model_sha256,
    sample_files,
    start_folder,
    verified_bytes,
    write_file,
    write_manifest,
)
from tufl.runtime.folder_lock import FolderLock
from tufl.runtime.progress import progress_bar, say

CONF_SCALE = 65535


@dataclass(frozen=True)
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


@torch.no_grad()
def predict_pseudo_labels(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """Hard labels ``[B, H, W]`` (int64) and confidences (max softmax, float32)."""
    probs = model(images).main.float().softmax(dim=1)
    conf, labels = probs.max(dim=1)
    return labels, conf


def pseudo_label_paths(folder: Path, dataset: SegDataset, index: int) -> tuple[Path, Path]:
    """The ``_pseudo.png`` and ``_conf.png`` files of sample ``index`` in ``folder``."""
    label_name, conf_name = sample_files(dataset, index)
    return folder / label_name, folder / conf_name


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_pseudo_labels(model: nn.Module, dataset: SegDataset, folder: Path, device: torch.device,
                        progress: bool = True, source: Provenance | None = None) -> int:
    """Predict and write the pseudo-labels of every image of ``dataset``, then the folder's
    manifest (:mod:`tufl.objective.pseudo_label_files`); returns the count.

    ``source`` records where they come from (default: the model's weights and the
    dataset's resize only). The folder is locked while it is written; leftovers of
    killed writes are removed, and old pseudo-labels of another source too, first.
    """
    folder = Path(folder)
    if source is None:
        resize = list(dataset.resize) if dataset.resize else None
        source = Provenance("", model_sha256(model), {"resize": resize})
    with FolderLock(folder, "pseudo-labels"):
        for note in start_folder(folder, source):
            say(f"[tufl] {note}")
        files = _write_files(model, dataset, folder, device, progress)
        write_manifest(folder, source, files)
    return len(dataset)


def _write_files(model: nn.Module, dataset: SegDataset, folder: Path, device: torch.device,
                 progress: bool) -> dict[str, FileEntry]:
    """Write every sample's two PNGs; returns their manifest entries."""
    files: dict[str, FileEntry] = {}
    model.to(device).eval()
    for i in progress_bar(range(len(dataset)), desc="pseudo-label", unit="image", disable=not progress):
        label_name, conf_name = sample_files(dataset, i)
        if label_name in files:
            raise BadFileError(dataset.image_path(i), f"its pseudo-labels would overwrite those of another "
                                                      f"sample ({label_name}): same name, different suffix")
        image = image_to_tensor(dataset.read_image(i))[None].to(device)
        labels, conf = predict_pseudo_labels(model, image)
        quantised = (conf[0] * CONF_SCALE).round().to(torch.int32).cpu().numpy().astype(np.uint16)
        files[label_name] = write_file(folder, label_name, _png_bytes(labels[0].to(torch.uint8).cpu().numpy()))
        files[conf_name] = write_file(folder, conf_name, _png_bytes(quantised))
    return files


def read_pseudo_label(folder: Path, dataset: SegDataset, index: int,
                      files: Mapping[str, FileEntry] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(labels uint8 [H, W], confidence float32 [H, W])`` of one target image; with the
    manifest's ``files``, each file's size and CRC-32 are checked against it."""
    names = sample_files(dataset, index)
    out = []
    for name in names:
        path = Path(folder) / name
        data = verified_bytes(path, None if files is None else files.get(name))
        try:
            with Image.open(io.BytesIO(data)) as img:
                out.append(np.asarray(img))
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadFileError(path, f"unreadable pseudo-label file: {exc}") from None
    labels, conf = out
    if labels.shape != conf.shape:
        raise BadFileError(Path(folder) / names[0], f"size {labels.shape} differs from {names[1]} {conf.shape}")
    return labels.astype(np.uint8), conf.astype(np.float32) / CONF_SCALE


class OfflinePseudoLabels(Dataset):
    """Target pairs whose ``pseudo_label``/``confidence`` come from files on disk.

    The folder must match its manifest (:func:`~tufl.objective.pseudo_label_files.check_folder`,
    at construction); each file's CRC-32 is checked as it is read.

    The pseudo-label and a one-bit "confident" flag are packed into one map
    (``2 * label + flag``) so the weak view's nearest-neighbour crop/scale/flip moves
    them together; padding (255) unpacks to ignore with confidence 0. The flag is
    ``confidence >= threshold``; the mixing only needs that bit (pixel weights are
    the fraction of confident pixels), so ``confidence`` holds 1.0 or 0.0.
    """

    def __init__(self, pairs: TargetPairs, folder: Path, threshold: float) -> None:
        if not Path(folder).is_dir():
            raise BadFileError(folder, "pseudo-label folder not found (run `tufl pseudo-label`)")
        self.pairs = pairs
        self.base = pairs.base
        self.folder = Path(folder)
        self.threshold = threshold
        self.files = check_folder(self.folder, self.base)  # before training: manifest, samples, sizes

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: SampleKey) -> dict[str, Tensor | int]:
        index = check_key(key, len(self.base))
        image, _ = self.base.load(index)
        labels, conf = read_pseudo_label(self.folder, self.base, index, self.files)
        if labels.shape != image.shape[:2]:
            raise BadFileError(
                pseudo_label_paths(self.folder, self.base, index)[0],
                f"size {labels.shape} differs from the target image {image.shape[:2]} "
                "(written with another data.target.resize?)",
            )
        packed = (labels.astype(np.uint16) * 2 + (conf >= self.threshold)).astype(np.uint8)
        pair = make_target_pair(image, packed, self.pairs.cfg, key_rng(key), self.base.interpolation,
                                self.pairs.strong_view)
        assert pair.label is not None
        packed_view = torch.from_numpy(pair.label.astype(np.int64))
        padding = packed_view == IGNORE_INDEX
        return {
            **pair.fields(),  # weak, theta and strong (or T's draws for the device)
            "index": index,
            "pseudo_label": torch.where(padding, IGNORE_INDEX, packed_view // 2),
            "confidence": torch.where(padding, 0, packed_view % 2).float(),
            "skipped": skipped_text(self.base),
        }


class PseudoLabelSource:
    """The weak target view's pseudo-labels in a training step (see the module docstring).

    ``teacher``: the EMA teacher (a submodule of the objective, so it is checkpointed);
    ``labeller``: the frozen starting model (not state: rebuilt from the start weights).
    """

    def __init__(self, teacher: nn.Module | None = None, labeller: nn.Module | None = None) -> None:
        self.teacher = teacher
        self.labeller = labeller

    @torch.no_grad()
    def __call__(self, target: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Hard pseudo-labels ``[B, H, W]`` and confidences of ``target["weak"]``."""
        if "pseudo_label" in target:  # offline: read from files with the batch
            return target["pseudo_label"].long(), target["confidence"].float()
        if self.teacher is not None:
            return self.teacher.predict(target["weak"])
        if self.labeller is None:
            raise RuntimeError("pseudo-labels need a frozen labeller, an EMA teacher or offline files")
        return predict_pseudo_labels(self.labeller, target["weak"])


def frozen_labeller(cfg: Any, start_weights: dict[str, Any] | None, device: torch.device) -> nn.Module | None:
    """The frozen copy of the starting model that labels the target in stage two with
    ``pseudo_labels.source: online`` (None otherwise): an inference network, no gradients."""
    if cfg.experiment.mode != "stage2" or cfg.pseudo_labels.source != "online":
        return None
    labeller = build_model(cfg.model, training=False, weights=start_weights).model
    return labeller.to(device).eval().requires_grad_(False)
