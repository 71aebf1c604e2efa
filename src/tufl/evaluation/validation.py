"""Periodic validation of a training run: mIoU on the labelled target split."""

from __future__ import annotations

from typing import Any

from tufl.data.io import DEFAULT_MAX_IMAGE_PIXELS
from tufl.data.loader import eval_loader
from tufl.data.registry import open_dataset
from tufl.data.samples import EvalSamples
from tufl.evaluation.evaluate import evaluate
from tufl.evaluation.metrics import EvalResult
from tufl.evaluation.options import EvalConfig
from tufl.runtime.distributed import DistContext


class Validation:
    """Periodic mIoU on a labelled split (a ``data.val`` section), sharded over ranks."""

    def __init__(self, split: Any, num_classes: int, options: EvalConfig, ctx: DistContext,
                 progress: bool = True, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
        self.num_classes = num_classes
        self.options = options
        self.ctx = ctx
        self.progress = progress and ctx.is_main
        self.dataset = EvalSamples(open_dataset(split, num_classes, False, max_image_pixels),
                                   skip_bad=options.skip_bad_files)
        if ctx.is_main:
            for path, problem in self.dataset.skipped:
                print(f"[tufl] validation: left out {path}: {problem} (eval.skip_bad_files)")

    def run(self, model: Any) -> EvalResult:
        """The mIoU of ``model`` (a :class:`~tufl.models.segmentor.Segmentor`) on the split."""
        o = self.options
        loader = eval_loader(self.dataset, o.batch_size, o.num_workers, self.ctx.rank, self.ctx.world_size)
        return evaluate(model, loader, self.num_classes, self.ctx.device, o, progress=self.progress)
