"""How good are a run's stage-two pseudo-labels? The model of a run folder labels the target
training images (whole images, as ``tufl pseudo-label`` does); where the target has labels
(the demo's generated scenes do), this prints, as one JSON line per run:

- ``miou``, ``pixel_accuracy``: the hard pseudo-labels against the ground truth;
- ``share_confident``: the share of labelled pixels whose confidence (max softmax) reaches
  ``mix.confidence_threshold`` (the run's, else --threshold): the weight CIM gives a mixed
  image's target pixels is this share;
- ``accuracy_confident``, ``miou_confident``: the pseudo-labels on those pixels only;
- ``iou``: per-class IoU of the pseudo-labels (percent).

    PYTHONPATH=src python benchmarks/pseudo_label_quality.py RUN_DIR [RUN_DIR ...] [--threshold 0.968]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def measure(run_dir: Path, threshold: float | None, device: str) -> dict:
    from tufl.config import load_experiment
    from tufl.data.transforms import image_to_tensor
    from tufl.data.registry import open_dataset
    from tufl.evaluation.metrics import ConfusionMatrix
    from tufl.models.build import build_model
    from tufl.models.weights import read_weights
    from tufl.objective.pseudo_labels import predict_pseudo_labels

    cfg = load_experiment(run_dir / "config.yaml")
    checkpoint = run_dir / "checkpoint_last.pt"
    state = read_weights(str(checkpoint))
    model = build_model(cfg.model, training=False, weights=state).model.to(device).eval()
    dataset = open_dataset(cfg.data.target, cfg.model.num_classes, cfg.data.skip_bad_files)
    thr = threshold if threshold is not None else cfg.mix.confidence_threshold
    every, confident = (ConfusionMatrix(cfg.model.num_classes, device) for _ in range(2))
    for i in range(len(dataset)):
        truth = dataset.read_label(i)
        if truth is None:
            raise SystemExit(f"{dataset.image_path(i)}: no label; the target split needs labels to measure")
        labels, conf = predict_pseudo_labels(model, image_to_tensor(dataset.read_image(i))[None].to(device))
        truth_t = torch.as_tensor(truth, dtype=torch.int64, device=device)[None]
        keep = conf >= thr
        every.update(labels, truth_t)
        confident.update(labels, torch.where(keep, truth_t, torch.full_like(truth_t, every.ignore_index)))
    return {"run": str(run_dir), "images": len(dataset), "threshold": thr,
            "miou": round(100 * every.miou(), 2), "pixel_accuracy": round(100 * every.pixel_accuracy(), 2),
            "share_confident": round(100 * int(confident.matrix.sum()) / max(int(every.matrix.sum()), 1), 2),
            "accuracy_confident": round(100 * confident.pixel_accuracy(), 2),
            "miou_confident": round(100 * confident.miou(), 2),
            "iou": [None if v != v else round(100 * float(v), 1) for v in every.iou().tolist()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for run in args.runs:
        print(json.dumps(measure(run, args.threshold, args.device)), flush=True)


if __name__ == "__main__":
    main()
