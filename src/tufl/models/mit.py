"""MiT (Mix Transformer) encoders B0-B5, the backbone of SegFormer (Xie et al., NeurIPS 2021).

Four stages, each: an overlapping patch embedding (a strided convolution, kernel 7 with
stride 4, then kernel 3 with stride 2, padding kernel // 2; LayerNorm), a stack of
transformer blocks, a closing LayerNorm. Stage ``i`` returns features at ``1/4, 1/8,
1/16, 1/32`` of the input. A block is pre-norm:

* efficient self-attention: queries from every token; keys and values from the tokens
  reduced by a ``sr x sr`` convolution of stride ``sr`` (then LayerNorm) where ``sr > 1``;
  heads 1, 2, 5, 8 and reduction ratios 8, 4, 2, 1 per stage;
* Mix-FFN: linear (ratio 4), 3x3 depthwise convolution, GELU, linear;

each residual branch behind stochastic depth whose rate grows linearly from 0 over the
blocks (``drop_path_rate``, 0.1 in SegFormer and DAFormer).

Parameter names follow the NVIDIA ImageNet checkpoints ``mit_b0.pth`` ... ``mit_b5.pth``
(``patch_embed1.proj.weight``, ``block1.0.attn.q.weight``, ``block1.0.attn.kv.weight``,
``block1.0.attn.sr.weight``, ``block1.0.mlp.dwconv.dwconv.weight``, ``norm1.weight``), so
those files load as they are; :mod:`tufl.models.mit_weights` converts the Hugging Face
layout. LayerNorm epsilons as in those checkpoints' networks: 1e-6 in the blocks and the
stage norms, torch's default 1e-5 in the patch embeddings and after the reduction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

BLOCK_NORM_EPS = 1e-6


@dataclass(frozen=True)
class MiTSpec:
    """The architecture table of one MiT variant (SegFormer paper, appendix; NVIDIA code)."""

    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    patch_sizes: tuple[int, int, int, int] = (7, 3, 3, 3)
    strides: tuple[int, int, int, int] = (4, 2, 2, 2)
    mlp_ratio: int = 4


_WIDE = (64, 128, 320, 512)
MIT_VARIANTS: dict[str, MiTSpec] = {
    "mit_b0": MiTSpec((32, 64, 160, 256), (2, 2, 2, 2)),
    "mit_b1": MiTSpec(_WIDE, (2, 2, 2, 2)),
    "mit_b2": MiTSpec(_WIDE, (3, 4, 6, 3)),
    "mit_b3": MiTSpec(_WIDE, (3, 4, 18, 3)),
    "mit_b4": MiTSpec(_WIDE, (3, 8, 27, 3)),
    "mit_b5": MiTSpec(_WIDE, (3, 6, 40, 3)),
}


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples with probability ``p``,
    scaling the kept ones by ``1 / (1 - p)``; identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:.4f}"


def tokens_to_map(x: Tensor, height: int, width: int) -> Tensor:
    """``[B, H*W, C]`` tokens -> a ``[B, C, H, W]`` view (channels-last strides, no copy)."""
    return x.unflatten(1, (height, width)).permute(0, 3, 1, 2)


def map_to_tokens(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, H*W, C]``."""
    return x.flatten(2).transpose(1, 2)


class OverlapPatchEmbed(nn.Module):
    """Strided convolution with kernel > stride (neighbouring patches overlap), then LayerNorm."""

    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel, stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[-2:]
        return self.norm(map_to_tokens(x)), height, width


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys and values come from a spatially reduced sequence."""

    def __init__(self, dim: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)  # keys (first dim rows), then values
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        batch, n, dim = x.shape
        head_dim = dim // self.heads
        q = self.q(x).view(batch, n, self.heads, head_dim).transpose(1, 2)
        source = x
        if self.sr_ratio > 1:
            source = self.norm(map_to_tokens(self.sr(tokens_to_map(x, height, width))))
        kv = self.kv(source).view(batch, source.shape[1], 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])  # softmax(q k^T / sqrt(head_dim)) v
        return self.proj(out.transpose(1, 2).reshape(batch, n, dim))


class DepthwiseConv(nn.Module):
    """3x3 depthwise convolution on tokens (the positional cue of Mix-FFN)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        return map_to_tokens(self.dwconv(tokens_to_map(x, height, width)))


class MixFFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DepthwiseConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), height, width)))


class MiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, sr_ratio: int, mlp_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = MixFFN(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        return x + self.drop_path(self.mlp(self.norm2(x), height, width))


class MixTransformer(nn.Module):
    """A MiT encoder; ``forward`` returns the four stage outputs ``[B, C_i, H / s_i, W / s_i]``
    (``s_i`` = 4, 8, 16, 32). Stage ``i`` (1-based) lives in ``patch_embed{i}``, ``block{i}``
    and ``norm{i}``."""

    def __init__(self, spec: MiTSpec, drop_path_rate: float = 0.1, in_channels: int = 3) -> None:
        super().__init__()
        self.spec = spec
        total = sum(spec.depths)
        rates = [drop_path_rate * i / (total - 1) for i in range(total)] if total > 1 else [0.0]
        first = 0
        for i, (dim, depth) in enumerate(zip(spec.embed_dims, spec.depths)):
            cin = in_channels if i == 0 else spec.embed_dims[i - 1]
            setattr(self, f"patch_embed{i + 1}",
                    OverlapPatchEmbed(cin, dim, spec.patch_sizes[i], spec.strides[i]))
            setattr(self, f"block{i + 1}", nn.ModuleList(
                MiTBlock(dim, spec.num_heads[i], spec.sr_ratios[i], spec.mlp_ratio, rates[first + j])
                for j in range(depth)))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dim, eps=BLOCK_NORM_EPS))
            first += depth
        self.apply(_init_weights)

    @property
    def channels(self) -> tuple[int, int, int, int]:
        return self.spec.embed_dims

    def stages(self) -> Iterator[tuple[OverlapPatchEmbed, nn.ModuleList, nn.LayerNorm]]:
        for i in range(1, len(self.spec.depths) + 1):
            yield getattr(self, f"patch_embed{i}"), getattr(self, f"block{i}"), getattr(self, f"norm{i}")

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for embed, blocks, norm in self.stages():
            tokens, height, width = embed(x)
            for block in blocks:
                tokens = block(tokens, height, width)
            x = tokens_to_map(norm(tokens), height, width)
            features.append(x)
        return features


def _init_weights(m: nn.Module) -> None:
    """Random initialisation of the SegFormer code: truncated normal (std 0.02) linear
    weights, He-normal (fan-out) convolutions, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_mit(name: str, drop_path_rate: float = 0.1) -> MixTransformer:
    """The MiT encoder ``name`` (``mit_b0`` ... ``mit_b5``)."""
    if name not in MIT_VARIANTS:
        raise ValueError(f"unknown MiT variant {name!r}; expected one of {', '.join(MIT_VARIANTS)}")
    return MixTransformer(MIT_VARIANTS[name], drop_path_rate)
