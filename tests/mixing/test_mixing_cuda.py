"""Mixing on a GPU."""

from __future__ import annotations

import pytest
import torch

from tufl.mixing.classmix import classmix

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


def test_classmix_on_cuda_keeps_its_invariants():
    g = torch.Generator(device=CUDA).manual_seed(0)
    source = torch.randint(0, 100, (4, 3, 32, 48), dtype=torch.uint8, device=CUDA)
    target = torch.randint(150, 256, (4, 3, 32, 48), dtype=torch.uint8, device=CUDA)
    labels = torch.randint(0, 19, (4, 32, 48), device=CUDA)
    pseudo = torch.randint(0, 19, (4, 32, 48), device=CUDA)
    out = classmix(source, labels, target, pseudo, 19, g)
    assert out.images.device == source.device
    mask = out.mask[:, None].expand_as(source)
    assert torch.equal(out.images[mask], source[mask]) and torch.equal(out.images[~mask], target[~mask])
    assert torch.equal(out.labels[out.mask], labels[out.mask]) and torch.equal(out.labels[~out.mask], pseudo[~out.mask])
    for b in range(4):  # half of each sample's own classes, rounded up
        present = labels[b].unique().numel()
        assert int(out.selected[b].sum()) == (present + 1) // 2
