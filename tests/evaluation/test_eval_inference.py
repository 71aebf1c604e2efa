"""Multi-scale, flip and sliding-window inference on networks with known behaviour."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tufl.evaluation.inference import eval_mode, predict_probs, sliding_window_logits, window_starts
from tufl.evaluation.options import InferenceOptions
from tufl.models.segmentor import INPUT_CONVENTIONS, Segmentor, SegOutput

C = 4


class _PixelHead(nn.Module):
    """A 1x1 convolution: each pixel's logits depend on that pixel only."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, C, 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.conv(x)]


def pixel_net() -> Segmentor:
    return Segmentor(_PixelHead(), C, INPUT_CONVENTIONS["imagenet_rgb"]).eval()


class RampNet(nn.Module):
    """Logits = 1x1 conv of the pixel + a horizontal ramp: not flip-equivariant."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, C, 1)
        self.slope = nn.Parameter(torch.tensor([0.3, -0.2, 0.1, 0.0]).view(1, C, 1, 1))

    def forward(self, images: Tensor) -> SegOutput:
        x = images.float() / 255.0
        ramp = torch.linspace(0.0, 1.0, x.shape[-1], device=x.device).view(1, 1, 1, -1)
        return SegOutput(self.conv(x) + 5.0 * self.slope * ramp)


class WindowMeanNet(nn.Module):
    """Every pixel gets logits from the mean colour of the whole input (window)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.linear = nn.Linear(3, C)

    def forward(self, images: Tensor) -> SegOutput:
        mean = images.float().mean(dim=(2, 3)) / 255.0
        logits = self.linear(mean)[:, :, None, None]
        return SegOutput(logits.expand(-1, -1, *images.shape[-2:]))


def _images(batch: int, height: int, width: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), generator=g, dtype=torch.uint8)


def test_single_scale_is_softmax_of_logits() -> None:
    net, x = pixel_net(), _images(2, 9, 13)
    probs = predict_probs(net, x, num_classes=C)
    assert probs.shape == (2, C, 9, 13) and probs.dtype == torch.float32
    torch.testing.assert_close(probs, net(x).main.softmax(1))


def test_uniform_images_are_invariant_to_scales_and_flip() -> None:
    # A per-pixel network on images of one colour each predicts the same
    # probabilities everywhere, so every scale and the flip must agree exactly;
    # two different colours check that batch items are not mixed up.
    net = pixel_net()
    x = torch.empty(2, 3, 10, 14, dtype=torch.uint8)
    x[0] = torch.tensor([200, 30, 90]).view(3, 1, 1)
    x[1] = torch.tensor([10, 240, 60]).view(3, 1, 1)
    single = predict_probs(net, x)
    multi = predict_probs(net, x, InferenceOptions(scales=(0.5, 0.75, 1.0, 1.5), flip=True))
    torch.testing.assert_close(multi, single, atol=1e-6, rtol=0)
    assert not torch.allclose(single[0], single[1])


def test_flip_on_per_pixel_network_changes_nothing() -> None:
    net, x = pixel_net(), _images(2, 7, 11)
    torch.testing.assert_close(predict_probs(net, x, InferenceOptions(flip=True)), predict_probs(net, x), atol=1e-6, rtol=0)


def test_flip_averages_the_mirrored_prediction() -> None:
    net, x = RampNet(), _images(2, 6, 9)
    plain = net(x).main.softmax(1)
    mirrored = net(x.flip(-1)).main.softmax(1).flip(-1)
    result = predict_probs(net, x, InferenceOptions(flip=True))
    torch.testing.assert_close(result, (plain + mirrored) / 2)
    assert not torch.allclose(result, plain, atol=1e-3)


def test_multi_scale_with_flip_matches_reference_loop() -> None:
    net, x = RampNet(), _images(1, 10, 15)
    scales = (0.5, 1.0, 1.25)
    expected = torch.zeros(1, C, 10, 15)
    for s in scales:
        size = (int(10 * s + 0.5), int(15 * s + 0.5))  # 0.5 -> 5x8, 1.25 -> 13x19
        scaled = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
        for flipped in (False, True):
            inp = scaled.flip(-1) if flipped else scaled
            p = net(inp).main.softmax(1)
            p = p.flip(-1) if flipped else p
            expected += F.interpolate(p, size=(10, 15), mode="bilinear", align_corners=False)
    expected /= 6
    result = predict_probs(net, x, InferenceOptions(scales=scales, flip=True))
    torch.testing.assert_close(result, expected)
    torch.testing.assert_close(result.sum(1), torch.ones(1, 10, 15))


def test_window_starts_cover_the_size() -> None:
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(10, 4, 4) == [0, 4, 6]
    assert window_starts(8, 4, 4) == [0, 4]
    assert window_starts(4, 4, 2) == [0]
    assert window_starts(3, 4, 2) == [0]


def test_window_equal_to_input_is_plain_inference() -> None:
    net, x = WindowMeanNet(), _images(2, 8, 12)
    torch.testing.assert_close(predict_probs(net, x, InferenceOptions(window=(8, 12))), predict_probs(net, x))


@pytest.mark.parametrize(
    ("size", "window", "stride"),
    [((13, 21), (6, 8), (4, 5)), ((12, 16), (6, 8), (6, 8)), ((5, 7), (8, 10), None)],
)
def test_sliding_window_on_per_pixel_network_is_plain_inference(size, window, stride) -> None:
    net, x = pixel_net(), _images(2, *size)
    result = predict_probs(net, x, InferenceOptions(window=window, stride=stride, flip=True))
    torch.testing.assert_close(result, predict_probs(net, x), atol=1e-6, rtol=0)


def test_overlapping_windows_are_averaged() -> None:
    # The window-mean network gives each window one logit vector; a pixel must get
    # the mean over the windows that contain it.
    net, x = WindowMeanNet(), _images(1, 7, 10)
    window, stride = (4, 6), (2, 3)
    total = torch.zeros(1, C, 7, 10)
    count = torch.zeros(7, 10)
    tops = [0, 2, 3]  # 0, 2, then 7 - 4
    lefts = [0, 3, 4]  # 0, 3, then 10 - 6
    for top in tops:
        for left in lefts:
            crop = x[:, :, top : top + 4, left : left + 6]
            logits = net.linear(crop.float().mean(dim=(2, 3)) / 255.0)
            for i in range(top, top + 4):
                for j in range(left, left + 6):
                    total[0, :, i, j] += logits[0]
                    count[i, j] += 1
    expected = total / count
    torch.testing.assert_close(sliding_window_logits(net, x.float(), window, stride), expected)
    torch.testing.assert_close(predict_probs(net, x, InferenceOptions(window=window, stride=stride)), expected.softmax(1))


def test_padding_for_inputs_smaller_than_the_window() -> None:
    # Zero padding enters the window mean: the 4x5 image is seen in an 6x5 window
    # with two rows of zeros.
    net, x = WindowMeanNet(), _images(1, 4, 5)
    logits = net.linear(x.float().sum(dim=(2, 3)) / (6 * 5) / 255.0)
    expected = logits[:, :, None, None].expand(-1, -1, 4, 5)
    torch.testing.assert_close(sliding_window_logits(net, x.float(), (6, 5), (3, 5)), expected)


def test_bad_arguments_are_rejected() -> None:
    net, x = pixel_net(), _images(1, 8, 8)
    with pytest.raises(ValueError, match="classes"):
        predict_probs(net, x, num_classes=C + 1)
    with pytest.raises(ValueError, match="scales"):
        predict_probs(net, x, InferenceOptions(scales=()))
    with pytest.raises(ValueError, match="stride"):
        predict_probs(net, x, InferenceOptions(window=(4, 4), stride=(5, 2)))
    with pytest.raises(ValueError, match="window as well"):
        predict_probs(net, x, InferenceOptions(stride=(2, 2)))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        predict_probs(net, x[:, :2])
    with pytest.raises(TypeError, match="SegOutput"):
        predict_probs(nn.Identity(), x)


def test_amp_on_cpu_stays_close_to_fp32() -> None:
    net, x = pixel_net(), _images(2, 8, 8)
    probs = predict_probs(net, x, InferenceOptions(amp=True))
    assert probs.dtype == torch.float32
    torch.testing.assert_close(probs, predict_probs(net, x), atol=2e-2, rtol=0)


def test_eval_mode_restores_training_mode() -> None:
    net = pixel_net().train()
    with eval_mode(net):
        assert not net.training
    assert net.training
