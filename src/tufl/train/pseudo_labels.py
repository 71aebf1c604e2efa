"""Stage-two pseudo-labels: prediction, files on disk, and training from those files.

``tufl pseudo-label`` writes, for every image of a target split (at the dataset's
resize), ``<name>_pseudo.png`` (8-bit train ids) and ``<name>_conf.png`` (16-bit
confidence, ``round(conf * 65535)``) into a folder. With
``pseudo_labels.source: offline`` stage two reads them instead of running the
frozen stage-one model every step; the weak-view crop/scale/flip of each target
sample is applied to them exactly as to the image (nearest neighbour).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from tufl.atomic import atomic_path
from tufl.data.base import SegDataset
from tufl.data.io import BadFileError
from tufl.data.labels import IGNORE_INDEX
from tufl.data.samples import SampleKey, TargetPairs, check_key, key_rng, skipped_text
from tufl.data.transforms import image_to_tensor
from tufl.data.views import make_target_pair

CONF_SCALE = 65535


@torch.no_grad()
def predict_pseudo_labels(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """Hard labels ``[B, H, W]`` (int64) and confidences (max softmax, float32)."""
    probs = model(images).main.float().softmax(dim=1)
    conf, labels = probs.max(dim=1)
    return labels, conf


def _stem(dataset: SegDataset, index: int) -> str:
    name = dataset.sample_name(index)
    return name.rsplit(".", 1)[0]


def pseudo_label_paths(folder: Path, dataset: SegDataset, index: int) -> tuple[Path, Path]:
    stem = _stem(dataset, index)
    return folder / f"{stem}_pseudo.png", folder / f"{stem}_conf.png"


def _save_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def write_pseudo_labels(model: nn.Module, dataset: SegDataset, folder: Path, device: torch.device,
                        progress: bool = True) -> int:
    """Predict and write the pseudo-labels of every image of ``dataset``; returns the count."""
    model.to(device).eval()
    for i in tqdm(range(len(dataset)), desc="pseudo-label", disable=not progress):
        image = image_to_tensor(dataset.read_image(i))[None].to(device)
        labels, conf = predict_pseudo_labels(model, image)
        label_path, conf_path = pseudo_label_paths(folder, dataset, i)
        _save_png(label_path, labels[0].to(torch.uint8).cpu().numpy())
        quantised = (conf[0] * CONF_SCALE).round().to(torch.int32).cpu().numpy().astype(np.uint16)
        _save_png(conf_path, quantised)
    return len(dataset)


def read_pseudo_label(folder: Path, dataset: SegDataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels uint8 [H, W], confidence float32 [H, W])`` of one target image."""
    label_path, conf_path = pseudo_label_paths(folder, dataset, index)
    out = []
    for path in (label_path, conf_path):
        if not path.is_file():
            raise BadFileError(path, "pseudo-label file missing (run `tufl pseudo-label` for this split)")
        try:
            with Image.open(path) as img:
                out.append(np.asarray(img))
        except OSError as exc:
            raise BadFileError(path, f"unreadable pseudo-label file: {exc}") from exc
    labels, conf = out
    if labels.shape != conf.shape:
        raise BadFileError(label_path, f"size {labels.shape} differs from {conf_path} {conf.shape}")
    return labels.astype(np.uint8), conf.astype(np.float32) / CONF_SCALE


class OfflinePseudoLabels(Dataset):
    """Target pairs whose ``pseudo_label``/``confidence`` come from files on disk.

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

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: SampleKey) -> dict[str, Tensor | int]:
        index = check_key(key, len(self.base))
        image, _ = self.base.load(index)
        labels, conf = read_pseudo_label(self.folder, self.base, index)
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
