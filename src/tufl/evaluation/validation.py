"""Periodic validation of a training run: mIoU on the labelled target split."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tufl.data.factory import open_dataset
from tufl.data.loader import eval_loader
from tufl.data.samples import EvalSamples
from tufl.evaluation.evaluate import evaluate
from tufl.evaluation.metrics import EvalResult

if TYPE_CHECKING:
    from tufl.config.schema import Config
    from tufl.models.segmentor import Segmentor
    from tufl.train.distributed import DistContext


class Validation:
    """Periodic mIoU on the labelled target split (sharded over ranks)."""

    def __init__(self, cfg: Config, ctx: DistContext) -> None:
        assert cfg.data.val is not None
        self.cfg = cfg
        self.ctx = ctx
        self.dataset = EvalSamples(open_dataset(cfg.data.val, cfg.model.num_classes, False),
                                   skip_bad=cfg.eval.skip_bad_files)
        if ctx.is_main:
            for path, problem in self.dataset.skipped:
                print(f"[tufl] validation: left out {path}: {problem} (eval.skip_bad_files)")

    def run(self, model: Segmentor) -> EvalResult:
        e = self.cfg.eval
        loader = eval_loader(self.dataset, e.batch_size, e.num_workers, self.ctx.rank, self.ctx.world_size)
        return evaluate(model, loader, self.cfg.model.num_classes, self.ctx.device, scales=e.scales,
                        flip=e.flip, window=e.window, stride=e.stride, amp=e.amp,
                        progress=self.ctx.is_main and self.cfg.train.progress)


def build_validation(cfg: Config, ctx: DistContext) -> Validation | None:
    """The run's validation, or None when the config has no ``data.val``."""
    return Validation(cfg, ctx) if cfg.data.val is not None else None
