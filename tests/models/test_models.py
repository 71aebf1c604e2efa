"""Network architecture, output contract and weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tufl.models import ModelConfig, Segmentor, WeightsError, build_model, count_parameters
from tufl.models.bisenet import BiSeNet
from tufl.models.deeplabv2 import DeepLabV2
from tufl.models.resnet import FrozenBatchNorm2d, ResNet


def _conv_out(n: int, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    return (-(-span // s) if ceil else span // s) + 1


def test_backbone_parameter_counts_match_standard_resnets():
    # torchvision resnet101 / resnet18 totals minus their 1000-way fc layer.
    assert count_parameters(ResNet(101)) == 44_549_160 - (2048 * 1000 + 1000) == 42_500_160
    assert count_parameters(ResNet(18)) == 11_689_512 - (512 * 1000 + 1000) == 11_176_512


def test_deeplabv2_is_dilated_with_output_stride_8_and_stride_in_first_1x1():
    net = DeepLabV2(19)
    h, w = 65, 97
    feats = net.backbone(torch.zeros(1, 3, h, w))
    # stem conv s2, Caffe ceil-mode max-pool s2, layer2 s2, then dilation instead of stride
    s2 = _conv_out(h, 7, 2, 3), _conv_out(w, 7, 2, 3)
    s4 = tuple(_conv_out(n, 3, 2, 1, ceil=True) for n in s2)
    s8 = tuple(_conv_out(n, 1, 2, 0) for n in s4)
    assert feats[0].shape[-2:] == s4
    assert feats[1].shape[-2:] == feats[2].shape[-2:] == feats[3].shape[-2:] == s8
    assert [f.shape[1] for f in feats] == [256, 512, 1024, 2048]
    block = net.backbone.layer2[0]
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)
    assert {b.conv2.dilation for b in net.backbone.layer3} == {(2, 2)}
    assert {b.conv2.dilation for b in net.backbone.layer4} == {(4, 4)}
    assert len(net.backbone.layer3) == 23


def test_aspp_branches_are_summed_with_configured_dilations():
    net = DeepLabV2(5, dilations=(6, 12))
    assert [b.dilation for b in net.classifier.branches] == [(6, 6), (12, 12)]
    x = torch.randn(1, 2048, 9, 9)
    expected = net.classifier.branches[0](x) + net.classifier.branches[1](x)
    torch.testing.assert_close(net.classifier(x), expected)


@pytest.mark.parametrize("arch,aux", [("deeplabv2", 1), ("bisenet", 2)])
def test_output_contract_train_and_eval(arch, aux):
    cfg = ModelConfig(arch=arch, num_classes=16, multi_level=arch == "deeplabv2", freeze_bn=False)
    model = build_model(cfg).model
    images = torch.randint(0, 256, (2, 3, 48, 80), dtype=torch.uint8)
    model.train()
    out = model(images)
    assert out.main.shape == (2, 16, 48, 80)
    assert len(out.aux) == aux and all(a.shape == (2, 16, 48, 80) for a in out.aux)
    assert len(out.heads()) == aux + 1
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert out.aux == () and out.main.shape == (2, 16, 48, 80)


def test_bisenet_feature_strides_and_inference_build_has_no_aux_heads():
    net = BiSeNet(19)
    net.train()
    maps = net(torch.zeros(2, 3, 64, 128))
    assert [m.shape[-2:] for m in maps] == [(8, 16), (8, 16), (4, 8)]
    inference = build_model(ModelConfig(arch="bisenet"), training=False).model
    assert not any("aux" in k for k in inference.state_dict())
    sp = net.spatial_path(torch.zeros(1, 3, 64, 128))
    assert sp.shape[-2:] == (8, 16)


def test_bisenet_trains_with_one_image_per_batch():
    """The authors' BiSeNet setting is one image per GPU: the globally pooled branches
    must not hold a BatchNorm, which cannot train on one value per channel."""
    model = build_model(ModelConfig(arch="bisenet", freeze_bn=False)).model
    model.train()
    out = model(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    loss = sum(head.logsumexp(dim=1).mean() for head in out.heads())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_freeze_bn_fixes_statistics_and_affine_parameters():
    model = build_model(ModelConfig(arch="deeplabv2", freeze_bn=True)).model
    bns = [m for m in model.net.backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(bns) == 104  # 1 stem + 3 per bottleneck x 33 + 4 downsample
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.net.backbone.modules())
    groups = model.parameter_groups()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model.train()
    model(torch.randint(0, 256, (1, 3, 33, 33), dtype=torch.uint8))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # BN affine parameters are buffers, not trainable parameters.
    trainable = {id(p) for g in groups.values() for p in g}
    assert all(id(p) in trainable for p in model.parameters())
    assert count_parameters(model.net.backbone) == 42_500_160 - 2 * sum(b.num_features for b in bns)


def test_input_normalisation_follows_convention():
    cfg_rgb = build_model(ModelConfig(arch="bisenet", input_convention="imagenet_rgb")).model
    cfg_bgr = build_model(ModelConfig(arch="bisenet", input_convention="caffe_bgr")).model
    img = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(
        cfg_rgb.normalize(img).flatten(),
        torch.tensor([(10 - 123.675) / 58.395, (20 - 116.28) / 57.12, (30 - 103.53) / 57.375]),
    )
    torch.testing.assert_close(
        cfg_bgr.normalize(img).flatten(),
        torch.tensor([30 - 104.00698793, 20 - 116.66876762, 10 - 122.67891434]),
    )


def test_channels_last_and_autocast_forward():
    model = build_model(ModelConfig(arch="bisenet", freeze_bn=False), training=False).model.eval()
    x = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        ref = model(x.float()).main
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.float().contiguous(memory_format=torch.channels_last)).main
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp = model(x).main
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert amp.shape == ref.shape and torch.isfinite(amp).all()


# --------------------------------------------------------------------------- weights


def _deeplab_init_file(path: Path) -> dict[str, torch.Tensor]:
    """A file with the key layout of DeepLab_resnet_pretrained_imagenet.pth."""
    trunk = ResNet(101, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), stride_in_1x1=True, ceil_mode=True)
    state = {f"Scale.{k}": torch.randn_like(v.float()) if v.is_floating_point() else v
             for k, v in trunk.state_dict().items() if not k.endswith("num_batches_tracked")}
    for i, d in enumerate((6, 12, 18, 24)):  # the file's own 1000-class layer5
        state[f"Scale.layer5.conv2d_list.{i}.weight"] = torch.randn(1000, 2048, 3, 3)
        state[f"Scale.layer5.conv2d_list.{i}.bias"] = torch.randn(1000)
    torch.save(state, path)
    return state


def test_deeplab_init_file_loads_every_backbone_key(tmp_path):
    state = _deeplab_init_file(tmp_path / "DeepLab_resnet_pretrained_imagenet.pth")
    built = build_model(ModelConfig(arch="deeplabv2", pretrained=str(tmp_path / "DeepLab_resnet_pretrained_imagenet.pth")))
    assert built.weights_format == "deeplab_init"
    assert built.load_report.complete and not built.load_report.missing
    assert len(built.load_report.skipped) == 8
    assert built.model.convention.name == "caffe_bgr"
    own = built.model.net.backbone.state_dict()
    torch.testing.assert_close(own["layer3.22.conv2.weight"], state["Scale.layer3.22.conv2.weight"])
    torch.testing.assert_close(own["layer1.0.bn1.running_var"], state["Scale.layer1.0.bn1.running_var"])


def test_torchvision_layout_loads_into_both_backbones(tmp_path):
    for depth, arch in ((101, "deeplabv2"), (18, "bisenet")):
        trunk = ResNet(depth)
        state = {k: torch.randn_like(v.float()) if v.is_floating_point() else v for k, v in trunk.state_dict().items()}
        state["fc.weight"] = torch.randn(1000, trunk.channels[3])
        state["fc.bias"] = torch.randn(1000)
        path = tmp_path / f"resnet{depth}.pth"
        torch.save(state, path)
        built = build_model(ModelConfig(arch=arch, pretrained=str(path), freeze_bn=arch == "deeplabv2"))
        assert built.weights_format == "torchvision"
        assert built.load_report.complete and built.load_report.skipped == ["fc.weight", "fc.bias"]
        assert built.model.convention.name == "imagenet_rgb"
        backbone = built.model.net.backbone if arch == "deeplabv2" else built.model.net.context_path.backbone
        torch.testing.assert_close(backbone.state_dict()["conv1.weight"], state["conv1.weight"])


def test_convention_contradicting_weights_is_an_error(tmp_path):
    _deeplab_init_file(tmp_path / "init.pth")
    with pytest.raises(WeightsError, match="contradicts"):
        build_model(ModelConfig(pretrained=str(tmp_path / "init.pth"), input_convention="imagenet_rgb"))


def test_corrupt_missing_and_mismatched_files_give_clear_errors(tmp_path):
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights file .*corrupt.pth"):
        build_model(ModelConfig(pretrained=str(bad)))
    with pytest.raises(WeightsError, match="not found"):
        build_model(ModelConfig(pretrained=str(tmp_path / "nope.pth")))
    # ResNet-18 weights into the ResNet-101 of DeepLabV2: missing keys and shape mismatches
    small = tmp_path / "resnet18.pth"
    torch.save(ResNet(18).state_dict(), small)
    with pytest.raises(WeightsError) as info:
        build_model(ModelConfig(arch="deeplabv2", pretrained=str(small)))
    text = str(info.value)
    assert "missing in the file" in text and "shape mismatch" in text and "allow_partial_load" in text
    built = build_model(ModelConfig(arch="deeplabv2", pretrained=str(small), allow_partial_load=True))
    assert not built.load_report.complete and built.load_report.loaded > 0
    unknown = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(1)}, unknown)
    with pytest.raises(WeightsError, match="unrecognised weight layout"):
        build_model(ModelConfig(pretrained=str(unknown)))


def test_project_checkpoint_round_trip_and_aux_heads_skipped_for_inference(tmp_path):
    from tufl.models.weights import CHECKPOINT_FORMAT

    cfg = ModelConfig(arch="bisenet", num_classes=13, freeze_bn=False, input_convention="caffe_bgr")
    model = build_model(cfg).model
    ckpt = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "input_convention": "caffe_bgr",
            "model_config": {"arch": "bisenet", "num_classes": 13}}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    cfg2 = ModelConfig(arch="bisenet", num_classes=13, freeze_bn=False, pretrained=str(tmp_path / "ckpt.pt"))
    loaded = build_model(cfg2, training=False)
    assert loaded.model.convention.name == "caffe_bgr"
    assert loaded.load_report.skipped and all(k.startswith("net.aux_") for k in loaded.load_report.skipped)
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    model.eval(), loaded.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x).main, loaded.model(x).main)
    with pytest.raises(WeightsError, match="num_classes=13"):
        build_model(ModelConfig(arch="bisenet", num_classes=19, pretrained=str(tmp_path / "ckpt.pt")))


def test_segmentor_rejects_wrong_input_shape():
    model = Segmentor(torch.nn.Identity(), 3, build_model(ModelConfig(arch="bisenet")).model.convention)
    with pytest.raises(ValueError, match="expected images of shape"):
        model(torch.zeros(3, 8, 8))
