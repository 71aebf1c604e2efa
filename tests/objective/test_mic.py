"""Masked image consistency (mic.*): the patch mask, the term, and training with it in
stage one (its own EMA teacher) and from the shipped stage-two config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import runs
from tufl.runtime.typed_config import ConfigError, load_config
from tufl.config.schema import Config
from tufl.models.segmentor import SegOutput
from tufl.runtime import checkpoint_files as ckpt
from tufl.train.engine import Trainer
from tufl.objective.mic import MaskedConsistency, MicConfig, patch_mask
from tufl.runtime.run_log import read_metrics

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FILL = (123.675, 116.28, 103.53)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mask_has_the_patch_size_and_the_ratio():
    """Every patch is all kept or all hidden, the border patches cut short; the hidden fraction of
    the 4 x 40 x 40 = 6400 patches is 0.7 within 0.03: the standard deviation of that fraction is
    sqrt(0.7 * 0.3 / 6400) = 0.0057, so 0.03 is more than 5 of them (and the seed is fixed)."""
    p, h, w = 16, 40 * 16 - 5, 40 * 16 - 9  # the last row and column of patches are partial
    kept = patch_mask(4, h, w, p, 0.7, _generator(0), torch.device("cpu"))
    assert kept.shape == (4, 1, h, w) and kept.dtype == torch.bool
    padded = F.pad(kept.float(), (0, 40 * p - w, 0, 40 * p - h), mode="replicate")
    blocks = padded.view(4, 40, p, 40, p)
    assert torch.equal(blocks.amin(dim=(2, 4)), blocks.amax(dim=(2, 4)))  # constant per patch
    hidden = 1 - blocks[:, :, 0, :, 0].mean()
    assert abs(float(hidden) - 0.7) < 0.03
    # patch boundaries at multiples of p: some pair of neighbouring patches differs on every axis
    assert (kept[..., p - 1, :] != kept[..., p, :]).any() and (kept[..., p - 1] != kept[..., p]).any()
    assert torch.equal(kept, patch_mask(4, h, w, p, 0.7, _generator(0), torch.device("cpu")))  # reproducible
    assert not torch.equal(kept, patch_mask(4, h, w, p, 0.7, _generator(1), torch.device("cpu")))
    assert patch_mask(2, h, w, p, 0.0, _generator(0), torch.device("cpu")).all()
    assert not patch_mask(2, h, w, p, 1.0, _generator(0), torch.device("cpu")).any()


def test_hidden_pixels_take_the_input_mean_colour_and_kept_ones_stay():
    mic = MaskedConsistency(MicConfig(weight=1.0, patch_size=8, mask_ratio=0.5, photometric=False), FILL, 0.968)
    images = torch.randint(0, 256, (3, 3, 32, 48), dtype=torch.uint8)
    masked = mic.masked_images(images, _generator(2))
    kept = patch_mask(3, 32, 48, 8, 0.5, _generator(2), torch.device("cpu")).expand_as(images)
    assert masked.dtype == torch.uint8
    assert torch.equal(masked[kept], images[kept])
    fill = torch.tensor([124, 116, 104], dtype=torch.uint8).view(1, 3, 1, 1).expand_as(images)
    assert torch.equal(masked[~kept], fill[~kept]) and (~kept).any()


class _PixelNet(nn.Module):
    """A per-pixel linear classifier: its prediction at a pixel depends on that pixel only."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 5, 1)
        with torch.no_grad():
            self.conv.weight.mul_(scale)
            self.conv.bias.mul_(scale)

    def forward(self, images):
        return SegOutput(self.conv(images.float() / 255 - 0.5))


def _mic_term(net: nn.Module, ratio: float, threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mic = MaskedConsistency(MicConfig(weight=1.0, patch_size=4, mask_ratio=ratio, photometric=False), FILL, threshold)
    images = torch.randint(0, 256, (2, 3, 16, 24), dtype=torch.uint8)
    with torch.no_grad():
        teacher_logits = net(images).main
        conf, labels = teacher_logits.softmax(1).max(1)
        masked = mic.masked_images(images, _generator(4))
        term = mic.loss(net(masked).main, labels, conf)
    return term, conf, masked.eq(images).all()


def test_term_where_the_mask_keeps_everything_is_the_teachers_own_self_training_loss():
    """With mask_ratio 0 the masked image is the image itself, so a student equal to the teacher
    predicts exactly the teacher's logits and agrees with every pseudo-label: the term is then
    the confidence-weighted mean of -log(max softmax), computed here from the confidences alone;
    for a saturated teacher (one-hot softmax in float32) that is exactly 0. Masking 70 % of the
    patches makes the same saturated student disagree somewhere: the term becomes positive."""
    term, conf, unchanged = _mic_term(_PixelNet(1.0), 0.0, threshold=0.3)
    assert unchanged
    weight = (conf >= 0.3).float().mean(dim=(1, 2))  # the per-image confident fraction
    assert 0 < float(weight.min()) and float(weight.max()) < 1  # a non-trivial weighting
    expected = (weight.view(-1, 1, 1) * -conf.log()).sum() / conf.numel()
    torch.testing.assert_close(term, expected, rtol=1e-5, atol=0)

    saturated = _PixelNet(1e8)
    term, conf, unchanged = _mic_term(saturated, 0.0, threshold=0.968)
    assert unchanged and bool((conf == 1).all())
    assert term.item() == 0.0
    masked_term, _, unchanged = _mic_term(saturated, 0.7, threshold=0.968)
    assert not unchanged and masked_term.item() > 0


def test_mic_config_problems():
    problems = MicConfig(weight=-1, patch_size=0, mask_ratio=1.5).problems()
    assert [p.split(":")[0] for p in problems] == ["weight", "patch_size", "mask_ratio"]
    assert MicConfig().problems() == [] and not MicConfig().enabled


def _close(trainer: Trainer) -> None:
    for loader in (trainer.source_loader, trainer.target_loader):
        if loader is not None:
            loader.close()


def test_stage1_with_mic_trains_against_its_own_ema_teacher(scene_info, tmp_path):
    # an untrained student is never 0.968 confident: with that weight rule every pixel would weigh 0
    tree = runs.run_tree(scene_info, tmp_path / "s1", "stage1", 2, mic={"weight": 1.0, "patch_size": 8},
                         mix={"confidence_threshold": 0.0}, data={"val": None})
    trainer = Trainer(runs.config(tree))
    teacher = trainer.objective.teacher
    assert teacher is not None and trainer.objective.names == ["supervised", "consistency", "mic"]
    start = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer.run()
    records = [r for r in read_metrics(tmp_path / "s1") if r["kind"] == "train"]
    assert all(r["loss_mic"] > 0 for r in records) and len(records) == 2
    assert any(not torch.equal(start[k], v) for k, v in teacher.state_dict().items())  # the teacher moved
    without = Trainer(runs.config(runs.run_tree(scene_info, tmp_path / "plain", "stage1", 2)))
    assert without.objective.teacher is None and without.objective.names == ["supervised", "consistency"]
    _close(without)


def test_shipped_ema_mic_config_trains_on_generated_data(scene_info, source_only_run, tmp_path):
    path = CONFIGS / "gta5_cityscapes/bisenet_stage2_ema_mic.yaml"
    overrides = [
        f"experiment.output_dir={tmp_path / 'run'}", "experiment.device=cpu",
        f"model.pretrained={source_only_run / 'checkpoint_last.pt'}",
        "data.source.root=" + str(scene_info.source_root), "data.target.root=" + str(scene_info.target_root),
        "data.val.root=" + str(scene_info.target_root), "data.source.resize=null", "data.target.resize=null",
        "data.val.resize=null", "data.source_aug.crop_size=[64,32]", "data.target_views.crop_size=[64,32]",
        "data.num_workers=0", "data.batch_size=2", "train.iters=2", "train.val_every=0", "train.progress=false",
        "train.tensorboard=false", "mic.patch_size=8",
    ]
    cfg = load_config(Config, path, overrides)
    assert cfg.pseudo_labels.source == "ema" and cfg.mic.weight == 1.0 and cfg.mic.mask_ratio == 0.7
    Trainer(cfg).run()
    records = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert records and all("loss_mic" in r and "loss_mix" in r for r in records)
    state = ckpt.load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    assert any(k.startswith("teacher.model.") for k in state["losses"])
    with pytest.raises(ConfigError, match="mic.patch_size"):
        load_config(Config, path, [*overrides, "mic.patch_size=0"])
