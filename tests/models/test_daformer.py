"""MiT encoders and the DAFormer network: published sizes, official checkpoint layouts, the
output contract, AdamW with DAFormer's rules, and training on generated scenes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import runs
from tufl.runtime.typed_config import load_config
from tufl.config.schema import Config
from tufl.models import ModelConfig, WeightsError, build_model, count_parameters
from tufl.models.build import model_from_checkpoint
from tufl.models.daformer import DAFormer
from tufl.models.mit import build_mit
from tufl.train.engine import train
from tufl.train.optim import OptimConfig, build_optimizer
from tufl.runtime.run_log import read_metrics
from tufl.train.step import OptimizerStep

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# The architecture table (SegFormer, Xie et al. 2021, appendix; NVlabs/SegFormer
# mix_transformer.py): stage widths and depths; heads 1, 2, 5, 8, reduction ratios 8, 4, 2, 1,
# patch embeddings 7/3/3/3, MLP ratio 4 in every variant.
TABLE = {
    "mit_b0": ((32, 64, 160, 256), (2, 2, 2, 2)),
    "mit_b1": ((64, 128, 320, 512), (2, 2, 2, 2)),
    "mit_b2": ((64, 128, 320, 512), (3, 4, 6, 3)),
    "mit_b3": ((64, 128, 320, 512), (3, 4, 18, 3)),
    "mit_b4": ((64, 128, 320, 512), (3, 8, 27, 3)),
    "mit_b5": ((64, 128, 320, 512), (3, 6, 40, 3)),
}
PATCH, SR = (7, 3, 3, 3), (8, 4, 2, 1)
# Exact encoder counts of that architecture (no ImageNet classifier). Cross-check: nvidia/mit-b5's
# pytorch_model.bin is 328 MB = (81,443,008 + 512 x 1000 + 1000) float32 values.
EXACT = {"mit_b0": 3_319_392, "mit_b1": 13_151_424, "mit_b2": 24_196_288, "mit_b3": 44_072_128,
         "mit_b4": 60_842_688, "mit_b5": 81_443_008}
# Published sizes in millions (SegFormer paper, Table 1: encoder column, and the whole SegFormer
# with its all-MLP decoder for ADE20K's 150 classes; the totals 3.8, 64.1 and 84.7 are also those
# listed by Papers with Code). The encoder column is rounded loosely (B0: 3.32 printed as 3.4).
PUBLISHED_ENCODER_M = {"mit_b0": 3.4, "mit_b1": 13.1, "mit_b2": 24.2, "mit_b3": 44.0, "mit_b4": 60.8, "mit_b5": 81.4}
PUBLISHED_SEGFORMER_M = {"mit_b0": 3.8, "mit_b1": 13.7, "mit_b2": 27.5, "mit_b3": 47.3, "mit_b4": 64.1,
                         "mit_b5": 84.7}
SEGFORMER_DECODER_DIM = {"mit_b0": 256, "mit_b1": 256, "mit_b2": 768, "mit_b3": 768, "mit_b4": 768, "mit_b5": 768}


def segformer_decoder_parameters(variant: str, classes: int = 150) -> int:
    """SegFormer's all-MLP decoder: a linear layer per stage to C, a 1x1 fuse convolution 4C -> C
    without bias plus BatchNorm, a 1x1 classifier."""
    dims, c = TABLE[variant][0], SEGFORMER_DECODER_DIM[variant]
    return sum(d * c + c for d in dims) + (4 * c * c + 2 * c) + (c * classes + classes)


def nvidia_shapes(variant: str, classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the SegFormer release's ``mit_bX.pth`` (with its ImageNet ``head``)."""
    dims, depths = TABLE[variant]
    shapes: dict[str, tuple[int, ...]] = {}
    cin = 3
    for s, (c, depth, k, r) in enumerate(zip(dims, depths, PATCH, SR), start=1):
        shapes |= {f"patch_embed{s}.proj.weight": (c, cin, k, k), f"patch_embed{s}.proj.bias": (c,),
                   f"patch_embed{s}.norm.weight": (c,), f"patch_embed{s}.norm.bias": (c,)}
        for j in range(depth):
            b = f"block{s}.{j}"
            shapes |= {f"{b}.norm1.weight": (c,), f"{b}.norm1.bias": (c,),
                       f"{b}.attn.q.weight": (c, c), f"{b}.attn.q.bias": (c,),
                       f"{b}.attn.kv.weight": (2 * c, c), f"{b}.attn.kv.bias": (2 * c,),
                       f"{b}.attn.proj.weight": (c, c), f"{b}.attn.proj.bias": (c,),
                       f"{b}.norm2.weight": (c,), f"{b}.norm2.bias": (c,),
                       f"{b}.mlp.fc1.weight": (4 * c, c), f"{b}.mlp.fc1.bias": (4 * c,),
                       f"{b}.mlp.dwconv.dwconv.weight": (4 * c, 1, 3, 3), f"{b}.mlp.dwconv.dwconv.bias": (4 * c,),
                       f"{b}.mlp.fc2.weight": (c, 4 * c), f"{b}.mlp.fc2.bias": (c,)}
            if r > 1:
                shapes |= {f"{b}.attn.sr.weight": (c, c, r, r), f"{b}.attn.sr.bias": (c,),
                           f"{b}.attn.norm.weight": (c,), f"{b}.attn.norm.bias": (c,)}
        shapes |= {f"norm{s}.weight": (c,), f"norm{s}.bias": (c,)}
        cin = c
    shapes |= {"head.weight": (classes, dims[-1]), "head.bias": (classes,)}
    return shapes


def hf_shapes(variant: str, classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """Key -> shape of Hugging Face ``nvidia/mit-bX`` (SegformerForImageClassification)."""
    dims, depths = TABLE[variant]
    e = "segformer.encoder"
    shapes: dict[str, tuple[int, ...]] = {}
    cin = 3
    for i, (c, depth, k, r) in enumerate(zip(dims, depths, PATCH, SR)):
        p = f"{e}.patch_embeddings.{i}"
        shapes |= {f"{p}.proj.weight": (c, cin, k, k), f"{p}.proj.bias": (c,),
                   f"{p}.layer_norm.weight": (c,), f"{p}.layer_norm.bias": (c,)}
        for j in range(depth):
            b = f"{e}.block.{i}.{j}"
            for name, shape in (("layer_norm_1", (c,)), ("layer_norm_2", (c,))):
                shapes |= {f"{b}.{name}.weight": shape, f"{b}.{name}.bias": shape}
            for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                         "attention.output.dense"):
                shapes |= {f"{b}.{name}.weight": (c, c), f"{b}.{name}.bias": (c,)}
            shapes |= {f"{b}.mlp.dense1.weight": (4 * c, c), f"{b}.mlp.dense1.bias": (4 * c,),
                       f"{b}.mlp.dwconv.dwconv.weight": (4 * c, 1, 3, 3), f"{b}.mlp.dwconv.dwconv.bias": (4 * c,),
                       f"{b}.mlp.dense2.weight": (c, 4 * c), f"{b}.mlp.dense2.bias": (c,)}
            if r > 1:
                shapes |= {f"{b}.attention.self.sr.weight": (c, c, r, r), f"{b}.attention.self.sr.bias": (c,),
                           f"{b}.attention.self.layer_norm.weight": (c,), f"{b}.attention.self.layer_norm.bias": (c,)}
        shapes |= {f"{e}.layer_norm.{i}.weight": (c,), f"{e}.layer_norm.{i}.bias": (c,)}
        cin = c
    shapes |= {"classifier.weight": (classes, dims[-1]), "classifier.bias": (classes,)}
    return shapes


def _random_file(path: Path, shapes: dict[str, tuple[int, ...]], wrap: str | None = None) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) for k, shape in shapes.items()}
    torch.save({wrap: state} if wrap else state, path)
    return state


def _cfg(**kw) -> ModelConfig:
    return ModelConfig(**{"arch": "daformer", "backbone": "mit_b0", "freeze_bn": "none", **kw})


# --------------------------------------------------------------------------- architecture


@pytest.mark.parametrize("variant", list(TABLE))
def test_mit_encoders_have_the_published_parameter_counts(variant):
    from_table = sum(math.prod(s) for k, s in nvidia_shapes(variant).items() if not k.startswith("head."))
    assert from_table == EXACT[variant]
    assert abs(from_table / 1e6 - PUBLISHED_ENCODER_M[variant]) <= 0.1
    assert round((from_table + segformer_decoder_parameters(variant)) / 1e6, 1) == PUBLISHED_SEGFORMER_M[variant]
    with torch.device("meta"):  # counted without allocating B5
        encoder = build_mit(variant)
    assert count_parameters(encoder) == EXACT[variant]
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == {
        k: s for k, s in nvidia_shapes(variant).items() if not k.startswith("head.")}


def test_mit_stages_strides_attention_and_drop_path():
    encoder = build_mit("mit_b0", drop_path_rate=0.1).eval()
    feats = encoder(torch.zeros(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, 32, 16, 24), (2, 64, 8, 12), (2, 160, 4, 6), (2, 256, 2, 3)]
    embeds = [encoder.patch_embed1, encoder.patch_embed2, encoder.patch_embed3, encoder.patch_embed4]
    assert [(e.proj.kernel_size[0], e.proj.stride[0], e.proj.padding[0]) for e in embeds] == [
        (7, 4, 3), (3, 2, 1), (3, 2, 1), (3, 2, 1)]
    assert [encoder.block1[0].attn.sr.stride[0], encoder.block2[0].attn.sr.stride[0],
            encoder.block3[0].attn.sr.stride[0]] == [8, 4, 2]
    assert not hasattr(encoder.block4[0].attn, "sr")
    assert [b[0].attn.heads for b in (encoder.block1, encoder.block2, encoder.block3, encoder.block4)] == [1, 2, 5, 8]
    rates = [blk.drop_path.p for blocks in (encoder.block1, encoder.block2, encoder.block3, encoder.block4)
             for blk in blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.1, 8))


def test_efficient_attention_matches_the_formula():
    attn = build_mit("mit_b0").block1[0].attn.eval()  # one head, reduction 8
    x = torch.randn(1, 16 * 16, 32)
    q = attn.q(x)
    reduced = attn.norm(attn.sr(x.transpose(1, 2).reshape(1, 32, 16, 16)).flatten(2).transpose(1, 2))
    k, v = attn.kv(reduced).split(32, dim=-1)
    expected = attn.proj(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(32), dim=-1) @ v)
    torch.testing.assert_close(attn(x, 16, 16), expected, atol=1e-5, rtol=1e-5)


def test_daformer_decoder_structure():
    head = DAFormer(19, "mit_b0").head
    assert [e.in_channels for e in head.embed] == [32, 64, 160, 256]
    assert {e.out_channels for e in head.embed} == {256}
    first, *separable = head.fusion.branches
    assert first[0].kernel_size == (1, 1) and first[0].in_channels == 1024
    for branch, d in zip(separable, (6, 12, 18)):
        depthwise, pointwise = branch[0][0], branch[1][0]
        assert depthwise.dilation == (d, d) and depthwise.groups == 1024 and depthwise.kernel_size == (3, 3)
        assert pointwise.kernel_size == (1, 1) and pointwise.out_channels == 256
    bottleneck = head.fusion.bottleneck[0]
    assert (bottleneck.in_channels, bottleneck.out_channels, bottleneck.kernel_size) == (1024, 256, (3, 3))
    assert head.classifier.out_channels == 19 and head.dropout.p == 0.1


def test_daformer_output_contract_and_parameter_groups():
    model = build_model(_cfg(num_classes=16)).model
    images = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    model.train()
    out = model(images)
    assert out.main.shape == (2, 16, 64, 96) and out.aux == () and model.num_outputs == 1
    out.main.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(images).main.shape == (2, 16, 64, 96)
    groups = model.parameter_groups()
    assert {id(p) for p in groups["backbone"]} == {id(p) for p in model.net.backbone.parameters()}
    assert {id(p) for p in groups["head"]} == {id(p) for p in model.net.head.parameters()}
    assert model.convention.name == "imagenet_rgb"


# --------------------------------------------------------------------------- official weights


@pytest.mark.parametrize("wrap", [None, "state_dict"])
def test_nvidia_mit_file_loads_completely(tmp_path, wrap):
    path = tmp_path / "mit_b0.pth"
    written = _random_file(path, nvidia_shapes("mit_b0"), wrap)
    built = build_model(_cfg(pretrained=str(path)))
    assert built.weights_format == "mit_nvidia" and built.load_report.complete
    assert built.load_report.loaded == len(written) - 2
    assert sorted(built.load_report.skipped) == ["head.bias", "head.weight"]
    own = built.model.net.backbone.state_dict()
    for key in ("patch_embed1.proj.weight", "block1.0.attn.kv.weight", "block1.0.attn.sr.weight",
                "block4.1.mlp.dwconv.dwconv.weight", "norm4.bias"):
        assert torch.equal(own[key], written[key]), key
    assert built.model.convention.name == "imagenet_rgb"
    # the decoder starts fresh (classifier ~ N(0, 0.01)), not from the file's ImageNet head (N(0, 1) here)
    assert built.model.net.head.classifier.weight.std() < 0.02


def test_hugging_face_mit_file_loads_completely(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    written = _random_file(path, hf_shapes("mit_b0"))
    built = build_model(_cfg(pretrained=str(path)))
    n_blocks = sum(TABLE["mit_b0"][1])
    assert built.weights_format == "mit_hf" and built.load_report.complete
    # key+value pairs (weight and bias) become one kv tensor each; the classifier is skipped
    assert built.load_report.loaded == len(written) - 2 - 2 * n_blocks
    assert sorted(built.load_report.skipped) == ["classifier.bias", "classifier.weight"]
    own = built.model.net.backbone.state_dict()
    e = "segformer.encoder"
    pairs = {
        "patch_embed2.norm.weight": f"{e}.patch_embeddings.1.layer_norm.weight",
        "block1.1.norm1.bias": f"{e}.block.0.1.layer_norm_1.bias",
        "block2.0.attn.q.weight": f"{e}.block.1.0.attention.self.query.weight",
        "block3.1.attn.sr.weight": f"{e}.block.2.1.attention.self.sr.weight",
        "block3.1.attn.norm.weight": f"{e}.block.2.1.attention.self.layer_norm.weight",
        "block4.0.attn.proj.weight": f"{e}.block.3.0.attention.output.dense.weight",
        "block4.1.mlp.fc2.weight": f"{e}.block.3.1.mlp.dense2.weight",
        "block1.0.mlp.dwconv.dwconv.weight": f"{e}.block.0.0.mlp.dwconv.dwconv.weight",
        "norm3.weight": f"{e}.layer_norm.2.weight",
    }
    for ours, theirs in pairs.items():
        assert torch.equal(own[ours], written[theirs]), ours
    b = f"{e}.block.2.0.attention.self"
    for kind in ("weight", "bias"):  # keys first, then values
        stacked = torch.cat([written[f"{b}.key.{kind}"], written[f"{b}.value.{kind}"]])
        assert torch.equal(own[f"block3.0.attn.kv.{kind}"], stacked)


def test_mismatched_mit_files_give_clear_errors(tmp_path):
    shapes = nvidia_shapes("mit_b0")
    missing = tmp_path / "missing_kv.pth"
    state = _random_file(missing, shapes)
    del state["block2.1.attn.kv.weight"]
    torch.save(state, missing)
    with pytest.raises(WeightsError) as err:
        build_model(_cfg(pretrained=str(missing)))
    assert str(missing) in str(err.value) and "missing in the file" in str(err.value)
    assert "block2.1.attn.kv.weight" in str(err.value)

    other_variant = tmp_path / "mit_b1.pth"
    _random_file(other_variant, nvidia_shapes("mit_b1"))
    with pytest.raises(WeightsError) as err:
        build_model(_cfg(pretrained=str(other_variant)))
    message = str(err.value)
    assert str(other_variant) in message and "shape mismatch: patch_embed1.proj.weight: file [64, 3, 7, 7]" in message
    assert "model.backbone=mit_b0" in message

    half_pair = tmp_path / "hf_no_value.bin"
    hf = _random_file(half_pair, hf_shapes("mit_b0"))
    del hf["segformer.encoder.block.0.0.attention.self.value.weight"]
    torch.save(hf, half_pair)
    with pytest.raises(WeightsError) as err:
        build_model(_cfg(pretrained=str(half_pair)))
    message = str(err.value)
    assert "block1.0.attn.kv.weight" in message and "segformer.encoder.block.0.0.attention.self.key.weight" in message

    with pytest.raises(WeightsError, match="does not fit model.arch=deeplabv2"):
        build_model(ModelConfig(arch="deeplabv2", pretrained=str(other_variant)))


def test_safetensors_file_needs_the_package_or_loads(tmp_path):
    path = tmp_path / "model.safetensors"
    try:
        from safetensors.torch import save_file
    except ImportError:
        path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
        with pytest.raises(WeightsError) as err:
            build_model(_cfg(pretrained=str(path)))
        assert "safetensors" in str(err.value) and str(path) in str(err.value)
        return
    gen = torch.Generator().manual_seed(0)
    save_file({k: torch.randn(s, generator=gen) for k, s in hf_shapes("mit_b0").items()}, str(path))
    assert build_model(_cfg(pretrained=str(path))).load_report.complete


# --------------------------------------------------------------------------- AdamW


def _daformer_adamw(fused: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer, OptimConfig]:
    torch.manual_seed(0)
    model = build_model(_cfg()).model
    cfg = OptimConfig(name="adamw", lr=6e-5, head_lr_mult=10.0, betas=(0.9, 0.999), weight_decay=0.01,
                      backbone_norm_decay=False, fused=fused)
    return model, build_optimizer(model, cfg), cfg


def test_adamw_groups_follow_daformer_rules():
    model, opt, _ = _daformer_adamw(fused=False)
    assert isinstance(opt, torch.optim.AdamW)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"backbone", "backbone_no_decay", "head"}
    # DAFormer's mmcv rule: a backbone parameter whose name contains "norm" has decay_mult 0
    by_name = dict(model.net.backbone.named_parameters())
    assert {id(p) for p in groups["backbone_no_decay"]["params"]} == {id(p) for n, p in by_name.items() if "norm" in n}
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0
    assert groups["backbone"]["weight_decay"] == groups["head"]["weight_decay"] == 0.01
    assert groups["backbone"]["lr"] == groups["backbone_no_decay"]["lr"] == 6e-5
    assert groups["head"]["lr"] == pytest.approx(6e-4) and groups["head"]["betas"] == (0.9, 0.999)


@pytest.mark.parametrize("fused", [False, True])
def test_adamw_first_step_is_the_hand_computed_update(fused):
    model, opt, cfg = _daformer_adamw(fused)
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(1)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    opt.step()
    decay = {id(p): g["weight_decay"] * g["lr"] for g in opt.param_groups for p in g["params"]}
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    for p, p0 in zip(params, before):
        # first bias-corrected Adam step: m_hat = g, v_hat = g^2 -> lr * g / (|g| + eps)
        expected = p0 * (1 - decay[id(p)]) - lrs[id(p)] * p.grad / (p.grad.abs() + 1e-8)
        torch.testing.assert_close(p.detach(), expected, atol=1e-7, rtol=1e-5)


def test_fused_adamw_skips_a_nonfinite_step_on_the_device():
    model, opt, _ = _daformer_adamw(fused=True)
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    step = OptimizerStep(opt, torch.amp.GradScaler("cuda", enabled=False), params, grad_clip=None)
    for p in params:
        p.grad = torch.ones_like(p)
    step(torch.tensor(False))
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert all(int(opt.state[p]["step"]) == 0 and not opt.state[p]["exp_avg"].any() for p in params)
    step(torch.tensor(True))
    assert all(int(opt.state[p]["step"]) == 1 for p in params)
    assert not torch.equal(params[0], before[0])


# --------------------------------------------------------------------------- configs and training


@pytest.mark.parametrize("bench,classes", [("gta5_cityscapes", 19), ("synthia_cityscapes", 16)])
def test_shipped_daformer_configs_follow_daformer(bench, classes):
    stage2 = load_config(Config, CONFIGS / bench / "daformer_mitb5_stage2.yaml")
    source = load_config(Config, CONFIGS / bench / "daformer_mitb5_source_only.yaml")
    for cfg in (stage2, source):
        m, o = cfg.model, cfg.optim
        assert (m.arch, m.backbone, m.drop_path_rate, m.num_classes) == ("daformer", "mit_b5", 0.1, classes)
        assert (o.name, o.lr, o.head_lr_mult, o.weight_decay) == ("adamw", 6e-5, 10.0, 0.01)
        assert tuple(o.betas) == (0.9, 0.999)
        assert (o.backbone_norm_decay, o.warmup_iters, o.warmup_ratio, o.poly_power) == (False, 1500, 1e-6, 1.0)
        assert cfg.data.source_aug.crop_size == cfg.data.target_views.crop_size == (512, 512)
    assert source.model.pretrained == "pretrained/mit_b5.pth"
    assert stage2.model.pretrained == f"runs/{bench}/daformer_mitb5_stage1/checkpoint_last.pt"
    assert stage2.experiment.mode == "stage2" and stage2.loss.unsupervised == "tufl" and stage2.mix.lambda_mix == 0.5


def test_daformer_b0_trains_source_only_then_stage_two_on_generated_scenes(scene_info, tmp_path):
    model = {"arch": "daformer", "backbone": "mit_b0", "freeze_bn": "none"}
    optim = {"name": "adamw", "lr": 6e-5, "weight_decay": 0.01, "backbone_norm_decay": False, "warmup_iters": 1}
    first = runs.run_tree(scene_info, tmp_path / "src", "source_only", iters=2, model=model, optim=optim)
    train(runs.config(first))
    net, state = model_from_checkpoint(str(tmp_path / "src" / "checkpoint_last.pt"))
    assert isinstance(net.net, DAFormer) and state["model_config"]["backbone"] == "mit_b0"
    second = runs.run_tree(scene_info, tmp_path / "s2", "stage2", iters=2, optim=optim,
                           model={**model, "pretrained": str(tmp_path / "src" / "checkpoint_last.pt")})
    train(runs.config(second))
    records = read_metrics(tmp_path / "s2", "train")
    assert len(records) == 2 and all(math.isfinite(r["loss"]) for r in records)
    assert all(math.isfinite(r["loss_mix"]) and math.isfinite(r["loss_unsup"]) for r in records)
