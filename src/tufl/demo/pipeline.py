"""The demo pipeline (``tufl demo``): the whole method on built-in data, from generation to report.

1. Generate (or reuse, when the cached manifest matches) GTA5-like source and
   Cityscapes-like target scenes.
2. Train source-only, then stage one (TUFL) from it, then stage two (TUFL + CIM)
   from stage one, with the configs in ``tufl/demo/configs/``.
3. Evaluate the three final checkpoints on the target validation split (never used
   for training or model selection), print a comparison table and write the HTML report
   of the three run folders (:mod:`tufl.report`, as ``tufl report`` does) with these
   scores, the settings and the training times.
"""

from __future__ import annotations

import platform
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from tufl.report.inputs import ModelReport
from tufl.runtime.atomic import atomic_write_json

STAGES = (("source-only", "source_only"), ("stage one (TUFL)", "stage1"), ("stage two (TUFL + CIM)", "stage2"))
STAGE_NAMES = tuple(stage for _, stage in STAGES)


@dataclass(frozen=True)
class DemoSettings:
    """Data size and schedule; ``--quick`` shrinks everything for tests."""

    size: tuple[int, int]
    n_source: int
    n_target_train: int
    n_target_val: int
    # Iterations of the three stages; None = those of the demo configs.
    iters: tuple[int, int, int] | None = None
    overrides: tuple[str, ...] = ()


DEFAULT = DemoSettings((256, 128), 300, 300, 60)
QUICK = DemoSettings((128, 64), 16, 16, 6, (40, 10, 10), (
    "data.source_aug.crop_size=[128, 64]", "data.target_views.crop_size=[128, 64]",
    "data.num_workers=0", "train.checkpoint_every=10", "train.log_every=5", "train.inspect_every=5",
    "optim.warmup_iters=0",
))


# The config of each stage with the authors' protocol, where the demo's own differs: the base
# of ablation grids at demo scale (`tufl ablate --scale demo`), whose rows switch its parts.
AUTHORS_PROTOCOL = {"stage2": "stage2_authors"}


def config_path(stage: str, authors_protocol: bool = False) -> Path:
    """The demo's config file of ``stage`` (``authors_protocol``: the authors' protocol of it)."""
    name = AUTHORS_PROTOCOL.get(stage, stage) if authors_protocol else stage
    return Path(str(resources.files("tufl.demo") / "configs" / f"{name}.yaml"))


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python {platform.python_version()}"


def stage_overrides(extra: list[str], stage: str) -> list[str]:
    """The ``--set`` values for ``stage``: plain ``KEY=VALUE`` for every stage,
    ``STAGE:KEY=VALUE`` (STAGE one of source_only, stage1, stage2) for that stage only."""
    chosen = []
    for item in extra:
        prefix, colon, rest = item.partition(":")
        if colon and "=" not in prefix:
            if prefix not in STAGE_NAMES:
                raise ValueError(f"--set {item}: unknown stage {prefix!r}; choose one of {', '.join(STAGE_NAMES)}")
            if prefix == stage:
                chosen.append(rest)
        else:
            chosen.append(item)
    return chosen


def _stage_config(stage: str, data_info: Any, run_dir: Path, init: Path | None, seed: int,
                  iters: int | None, settings: DemoSettings, extra: list[str]):
    from tufl.config import load_experiment

    overrides = [
        f"data.source.root={data_info.source_root}",
        f"data.target.root={data_info.target_root}",
        f"experiment.output_dir={run_dir}",
        f"experiment.seed={seed}",
        *([f"train.iters={iters}"] if iters is not None else []),
        *settings.overrides,
        *stage_overrides(extra, stage),
    ]
    if init is not None:
        overrides.append(f"model.pretrained={init}")
    return load_experiment(config_path(stage), overrides)


def _prepare(data_info: Any, prepared_dir: Path, seed: int, settings: DemoSettings, extra: list[str],
             workers: int) -> None:
    """Write the prepared copies the three stages train from (as `tufl prepare-data` does)."""
    from tufl.data.prepared import prepare
    from tufl.train.builders import open_training_datasets

    cfg = _stage_config("stage1", data_info, prepared_dir, None, seed, None, settings,
                        [*extra, f"data.prepared_dir={prepared_dir}"])
    for domain, base in open_training_datasets(cfg).items():
        result = prepare(base, prepared_dir, workers=max(1, workers), progress=False)
        print(f"[demo] {domain}: prepared copy {result.folder} ({result.samples} samples, "
              f"{result.written} written, {result.reused} kept, {result.seconds:.1f} s)")


def _evaluate(checkpoint: Path, target_root: Path, device: torch.device):
    from tufl.data.registry import build_dataset
    from tufl.data.loader import eval_loader
    from tufl.data.samples import EvalSamples
    from tufl.evaluation.evaluate import evaluate
    from tufl.models.build import model_from_checkpoint

    model, _ = model_from_checkpoint(str(checkpoint))
    dataset = EvalSamples(build_dataset("cityscapes", str(target_root), "val", model.num_classes))
    return evaluate(model, eval_loader(dataset, batch_size=4), model.num_classes, device, progress=False)


@dataclass
class StageRuns:
    """The three trained stages: their run folders, reports (scores on the target validation
    split, records, training times) and evaluation results, and the iterations each ran."""

    run_dirs: list[Path] = field(default_factory=list)
    reports: list[ModelReport] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    iterations: list[int] = field(default_factory=list)
    pseudo_labels: str = ""  # where stage two's target labels came from


def _generate_data(data_dir: Path, seed: int, settings: DemoSettings, workers: int,
                   extra: list[str]) -> tuple[Any, float]:
    """Generate (or reuse) the scenes and write their prepared copies; returns the data's
    description and the seconds it took."""
    from tufl.demo.scenes import ensure_demo_data

    print(f"[demo] data: {data_dir} ({settings.size[0]}x{settings.size[1]}, {settings.n_source} source, "
          f"{settings.n_target_train} target train, {settings.n_target_val} target val, seed {seed})")
    t0 = time.time()
    info = ensure_demo_data(data_dir, seed=seed, size=settings.size, n_source=settings.n_source,
                            n_target_train=settings.n_target_train, n_target_val=settings.n_target_val,
                            workers=workers)
    _prepare(info, data_dir / "prepared", seed, settings, extra, workers)
    return info, time.time() - t0


def _train_stages(out: Path, info: Any, prepared_dir: Path, seed: int, settings: DemoSettings,
                  extra: list[str], device: torch.device) -> StageRuns:
    """Train the three stages in order, each from the checkpoint of the one before, and
    evaluate each final checkpoint on the target validation split."""
    from tufl.runtime.run_log import read_metrics
    from tufl.train.engine import train

    runs = StageRuns()
    init: Path | None = None
    for (name, stage), iters in zip(STAGES, settings.iters or (None, None, None)):
        run_dir = out / "runs" / stage
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a fresh run every time: nothing is reused from an earlier demo
        cfg = _stage_config(stage, info, run_dir, init, seed, iters, settings,
                            [f"data.prepared_dir={prepared_dir}", *extra])
        runs.iterations.append(cfg.train.iters)
        if stage == "stage2":
            runs.pseudo_labels = describe_pseudo_labels(cfg.pseudo_labels)
        print(f"\n[demo] === {name}: {cfg.train.iters} iterations ===")
        t0 = time.time()
        train(cfg)
        seconds = time.time() - t0
        init = run_dir / "checkpoint_last.pt"
        result = _evaluate(init, info.target_root, device)
        print(f"[demo] {name}: target val mIoU {100 * result.miou:.2f}")
        runs.run_dirs.append(run_dir)
        runs.results[name] = result
        runs.reports.append(ModelReport(name=name, miou=result.miou, iou=list(result.iou),
                                        metrics=read_metrics(run_dir), train_seconds=seconds))
    return runs


def _print_tables(runs: StageRuns) -> None:
    """Each stage's per-class IoU table, then the comparison of the three."""
    from tufl.evaluation.report import format_table

    print()
    for name, result in runs.results.items():
        print(format_table(result, f"{name}: per-class IoU on the target validation split"))
        print()
    print(comparison_table(runs.reports))


def describe_pseudo_labels(config: Any) -> str:
    """Where stage two's target pseudo-labels come from, in words (a ``PseudoLabelConfig``)."""
    if config.source == "ema":
        return f"an EMA teacher of the student (momentum {config.ema_momentum})"
    if config.source == "offline":
        return f"the files of `tufl pseudo-label` in {config.dir}"
    return "the frozen stage-one model (the paper's pseudo-labeller)"


def _shown_settings(seed: int, settings: DemoSettings, runs: StageRuns, data_seconds: float,
                    total: float) -> dict[str, Any]:
    """The settings listed on the report page and in ``summary.json``."""
    return {
        "seed": seed, "machine": machine_description(), "image size": f"{settings.size[0]}x{settings.size[1]}",
        "source images": settings.n_source, "target train images": settings.n_target_train,
        "target val images": settings.n_target_val,
        "iterations (source-only, stage one, stage two)": ", ".join(map(str, runs.iterations)),
        "stage-two pseudo-labels": runs.pseudo_labels,
        "network": "BiSeNet (ResNet-18), random initialisation", "configs": str(config_path("base").parent),
        "data generation seconds": round(data_seconds, 1), "total seconds": round(total, 1),
    }


def run_demo(out: Path, data_dir: Path, seed: int, settings: DemoSettings, workers: int,
             extra: list[str]) -> dict[str, Any]:
    """The whole demo: data, three trainings, their evaluation, the tables, the report and
    ``out/summary.json`` (returned)."""
    started = time.time()
    info, data_seconds = _generate_data(data_dir, seed, settings, workers, extra)
    device = torch.device("cpu")
    runs = _train_stages(out, info, data_dir / "prepared", seed, settings, extra, device)
    _print_tables(runs)
    total = time.time() - started
    settings_shown = _shown_settings(seed, settings, runs, data_seconds, total)
    page = _write_report(out / "report", runs, info.target_root, settings_shown)
    summary = {"seed": seed, "settings": settings_shown,
               "miou": {r.name: r.miou for r in runs.reports}, "report": str(page)}
    atomic_write_json(out / "summary.json", summary)
    print(f"\n[demo] report: {page}  (total {total / 60:.1f} min)")
    return summary


def _write_report(folder: Path, runs: StageRuns, target_root: Path, settings: dict[str, Any]) -> Path:
    """The report of the three run folders (:func:`tufl.report.build.report_runs`) with the
    demo's own scores (the target validation split), settings and training times, and
    samples of the target validation split."""
    from tufl.data.config import DatasetConfig
    from tufl.report.build import ReportExtras, ReportOptions, report_runs
    from tufl.report.samples import SampleSource

    names = tuple(r.name for r in runs.reports)
    val = DatasetConfig(name="cityscapes", root=str(target_root), split="val")
    extras = ReportExtras(
        settings=settings,
        train_seconds={r.name: r.train_seconds for r in runs.reports if r.train_seconds is not None},
        scores={r.name: (r.miou, r.iou) for r in runs.reports if r.miou is not None and r.iou is not None},
        scores_on="the target validation split",
        samples_from=SampleSource(val, labelled=True, origin="the demo's target validation split"),
    )
    options = ReportOptions(labels=names, samples=6, checkpoint="last", device="cpu",
                            title="tufl demo: synthetic -> realistic driving scenes")
    return report_runs(runs.run_dirs, folder, options, extras)


def comparison_table(reports: list[ModelReport]) -> str:
    """The three stages' target mIoU, gain over the stage before and training time, as text."""
    lines = ["model                      target mIoU   gain    train time",
             "-------------------------  -----------  ------  ----------"]
    previous = None
    for r in reports:
        gain = "" if previous is None else f"{100 * (r.miou - previous):+6.2f}"
        lines.append(f"{r.name:<25}  {100 * r.miou:>10.2f}  {gain:>6}  {r.train_seconds:>8.0f} s")
        previous = r.miou
    return "\n".join(lines)


__all__ = ["DEFAULT", "QUICK", "STAGE_NAMES", "DemoSettings", "run_demo", "stage_overrides"]
