"""Pixel weights, boundary band and the weighted mixed loss."""

from __future__ import annotations

import math

import pytest
import torch

from tufl.mixing.pixel_weights import boundary_band, confident_fraction, mixed_loss, pixel_weights


def test_confident_fraction_hand_computed():
    conf = torch.tensor(
        [
            [[0.99, 0.968], [0.5, 0.9679]],  # 2 of 4 reach 0.968
            [[1.0, 1.0], [1.0, 0.97]],  # 4 of 4
        ]
    )
    assert confident_fraction(conf, 0.968).tolist() == [0.5, 1.0]
    assert confident_fraction(conf, 0.995).tolist() == [0.0, 0.75]


def _band_reference(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Pixel i is in the band iff a pixel within Chebyshev distance ``width`` differs from it."""
    b, h, w = mask.shape
    out = torch.zeros_like(mask)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                for di in range(-width, width + 1):
                    for dj in range(-width, width + 1):
                        y, x = i + di, j + dj
                        if 0 <= y < h and 0 <= x < w and mask[n, y, x] != mask[n, i, j]:
                            out[n, i, j] = True
    return out


def test_boundary_band_hand_example():
    mask = torch.zeros(1, 6, 6, dtype=torch.bool)
    mask[0, 2:4, 2:4] = True
    expected = torch.zeros(1, 6, 6, dtype=torch.bool)
    expected[0, 1:5, 1:5] = True  # the 2x2 square and its 1-pixel ring
    assert torch.equal(boundary_band(mask, 1), expected)
    assert not boundary_band(mask, 0).any()


def test_boundary_band_ignores_image_border():
    mask = torch.zeros(1, 5, 5, dtype=torch.bool)
    mask[0, :, :2] = True  # touches three image borders
    expected = torch.zeros(1, 5, 5, dtype=torch.bool)
    expected[0, :, 1:3] = True
    assert torch.equal(boundary_band(mask, 1), expected)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_boundary_band_matches_reference(width):
    g = torch.Generator().manual_seed(width)
    mask = torch.rand(2, 9, 11, generator=g) > 0.6
    assert torch.equal(boundary_band(mask, width), _band_reference(mask, width))


def test_pixel_weights_pasted_target_and_band():
    mask = torch.zeros(2, 6, 6, dtype=torch.bool)
    mask[0, 2:4, 2:4] = True
    mask[1, :, :] = True
    tw = torch.tensor([0.25, 0.5])
    w = pixel_weights(mask, tw)
    assert torch.equal(w[0][mask[0]], torch.ones(4))
    assert torch.equal(w[0][~mask[0]], torch.full((32,), 0.25))
    assert torch.equal(w[1], torch.ones(6, 6))

    wb = pixel_weights(mask, tw, band_width=1, band_factor=2.0)
    expected = torch.full((6, 6), 0.25)
    expected[1:5, 1:5] = 0.5  # target pixels in the band: doubled
    expected[2:4, 2:4] = 2.0  # pasted pixels, all in the band: doubled
    assert torch.equal(wb[0], expected)
    assert torch.equal(wb[1], torch.ones(6, 6))  # no boundary at all


def test_mixed_loss_matches_explicit_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 3, generator=g)
    labels = torch.randint(0, 4, (2, 3, 3), generator=g)
    labels[0, 0, 0] = 255
    labels[1, 2, :] = 255
    weights = torch.rand(2, 3, 3, generator=g)
    total, count = 0.0, 0
    for b in range(2):
        for i in range(3):
            for j in range(3):
                y = int(labels[b, i, j])
                if y == 255:
                    continue
                z = [float(logits[b, c, i, j]) for c in range(4)]
                log_p = z[y] - math.log(sum(math.exp(v) for v in z))
                total += float(weights[b, i, j]) * -log_p
                count += 1
    assert count == 14
    got = mixed_loss(logits, labels, weights)
    assert got.item() == pytest.approx(total / count, rel=1e-5)


def test_mixed_loss_all_ignored_is_zero_with_graph():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = mixed_loss(logits, torch.full((1, 2, 2), 255), torch.ones(1, 2, 2))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
