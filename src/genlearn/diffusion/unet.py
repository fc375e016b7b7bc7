"""The denoising U-Net (Ho et al. 2020, Appendix B; Ronneberger et al. 2015), CPU-sized.

x_t and its timestep go in, the predicted noise (or v, or x_0) comes out, same shape:

1. The timestep becomes a sinusoidal embedding (Vaswani et al. 2017, section 3.5) passed
   through an MLP; a class label's learned embedding is added to it. Label `num_classes`
   is "no label", what classifier-free guidance trains with (Ho & Salimans 2022).
2. Down path: per resolution a residual block (GroupNorm, SiLU, 3x3 convolutions; the
   embedding scales and shifts the features in between, so every block knows the noise
   level), then a strided
   convolution halves the size; self-attention runs at 8x8 and below, where it is cheap.
3. Middle: residual block, self-attention, residual block.
4. Up path: mirror of the down path, each block also reading the down path's map of the
   same size (the U-Net's skip connections); nearest-neighbour upsampling + convolution.
5. Text (optional): the caption's token features are read by cross-attention at 16x16 and
   below (queries from the image, keys and values from the words: Rombach et al. 2022,
   section 3.3), and their pooled vector is added to the time embedding (Saharia et al. 2022).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlearn.errors import ConfigError

ATTENTION_MAX_SIZE = 8  # self-attention at this resolution and below
CROSS_ATTENTION_MAX_SIZE = 16  # cross-attention to the text at this resolution and below


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """[N] timesteps -> [N, dim]: cosines and sines at geometrically spaced frequencies."""
    half = dim // 2
    frequencies = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    angles = t.float()[:, None] * frequencies[None, :]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    return F.pad(embedding, (0, dim % 2))


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions; the time (and class) embedding scales and shifts the normalised
    features in between (Dhariwal & Nichol 2021, "AdaGN"). Added before the normalisation,
    as in Ho et al., a per-channel shift would be divided out again by the GroupNorm that
    follows, the more so the fewer channels share a group: with the narrow full-resolution
    layers a CPU can afford, the network would hardly know the noise level there."""

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int, dropout: float):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.embed = nn.Linear(embed_dim, 2 * out_channels)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early steps
        nn.init.zeros_(self.conv2.bias)
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.embed(F.silu(embedding))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the positions of a feature map, with a residual."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.heads = heads if channels % heads == 0 else 1
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        # [N, heads, positions, channels per head] for scaled_dot_product_attention
        attended = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        return x + self.out(attended.transpose(-1, -2).reshape(n, c, h, w))


class CrossAttention(nn.Module):
    """Each position of a feature map attends over the tokens of a text, with a residual."""

    def __init__(self, channels: int, context_dim: int, heads: int = 4):
        super().__init__()
        self.heads = heads if channels % heads == 0 else 1
        self.norm = _norm(channels)
        self.query = nn.Conv2d(channels, channels, 1)
        self.key_value = nn.Linear(context_dim, 2 * channels)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """x [N, C, H, W]; context [N, L, D]; mask [N, L], True where a token is real."""
        n, c, h, w = x.shape
        heads, per_head = self.heads, c // self.heads
        q = self.query(self.norm(x)).reshape(n, heads, per_head, h * w).transpose(-1, -2)
        k, v = self.key_value(context).reshape(n, -1, 2, heads, per_head).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        return x + self.out(attended.transpose(-1, -2).reshape(n, c, h, w))


class Attention(nn.Module):
    """Self-attention and/or cross-attention at one resolution (either may be absent)."""

    def __init__(self, channels: int, size: int, context_dim: int | None):
        super().__init__()
        self.self_attention = SelfAttention(channels) if size <= ATTENTION_MAX_SIZE else None
        self.cross_attention = (
            CrossAttention(channels, context_dim)
            if context_dim is not None and size <= CROSS_ATTENTION_MAX_SIZE
            else None
        )

    def forward(self, x: Tensor, context: Tensor | None, mask: Tensor | None) -> Tensor:
        if self.self_attention is not None:
            x = self.self_attention(x)
        if self.cross_attention is not None and context is not None:
            x = self.cross_attention(x, context, mask)
        return x


class UNet(nn.Module):
    """x_t [N, C, H, W] and timesteps [N] (and labels [N], or a text's token features and
    pooled vector) -> a tensor shaped like x_t."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        base_channels: int = 16,
        channel_multipliers: tuple[int, ...] | None = None,
        num_classes: int | None = None,
        dropout: float = 0.0,
        context_dim: int | None = None,
    ):
        super().__init__()
        if channel_multipliers is None:
            channel_multipliers = default_multipliers(image_size)
        levels = len(channel_multipliers)
        if image_size % 2 ** (levels - 1):
            raise ConfigError(
                f"image size {image_size} cannot be halved {levels - 1} times: use 28, 32 or 64"
            )
        embed_dim = 4 * base_channels
        self.base_channels = base_channels
        self.num_classes = num_classes
        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )
        # one extra row: the "no label" token classifier-free guidance trains with
        self.label_embedding = (
            nn.Embedding(num_classes + 1, embed_dim) if num_classes is not None else None
        )
        self.pooled_projection = (
            nn.Linear(context_dim, embed_dim) if context_dim is not None else None
        )
        widths = [base_channels * m for m in channel_multipliers]
        sizes = [image_size // 2**i for i in range(levels)]
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        self.down_blocks = nn.ModuleList()
        self.down_attention = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        previous = base_channels
        for level, (width, size) in enumerate(zip(widths, sizes, strict=True)):
            self.down_blocks.append(ResidualBlock(previous, width, embed_dim, dropout))
            self.down_attention.append(Attention(width, size, context_dim))
            last = level == levels - 1
            self.downsamples.append(
                nn.Identity() if last else nn.Conv2d(width, width, 3, stride=2, padding=1)
            )
            previous = width

        self.mid_block1 = ResidualBlock(previous, previous, embed_dim, dropout)
        self.mid_attention = Attention(previous, 0, context_dim)  # always attends
        self.mid_block2 = ResidualBlock(previous, previous, embed_dim, dropout)

        self.up_blocks = nn.ModuleList()
        self.up_attention = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for level in reversed(range(levels)):
            width, size = widths[level], sizes[level]
            self.up_blocks.append(ResidualBlock(previous + width, width, embed_dim, dropout))
            self.up_attention.append(Attention(width, size, context_dim))
            self.upsamples.append(
                nn.Identity() if level == 0 else nn.Conv2d(width, width, 3, padding=1)
            )
            previous = width
        self.norm_out = _norm(previous)
        self.conv_out = nn.Conv2d(previous, in_channels, 3, padding=1)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        labels: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
    ) -> Tensor:
        """`labels` [N] for a class-conditional net (`num_classes` = no label); `context`
        [N, L, D] token features, `context_mask` [N, L] and `pooled` [N, D] for a text one."""
        embedding = self.time_mlp(timestep_embedding(t, self.base_channels))
        if self.label_embedding is not None:
            if labels is None:  # unconditional: the "no label" token
                labels = torch.full_like(t, self.num_classes, dtype=torch.long)
            embedding = embedding + self.label_embedding(labels)
        if self.pooled_projection is not None and pooled is not None:
            embedding = embedding + self.pooled_projection(pooled)
        h = self.conv_in(x)
        skips = []
        for block, attention, downsample in zip(
            self.down_blocks, self.down_attention, self.downsamples, strict=True
        ):
            h = attention(block(h, embedding), context, context_mask)
            skips.append(h)
            h = downsample(h)
        h = self.mid_block1(h, embedding)
        h = self.mid_block2(self.mid_attention(h, context, context_mask), embedding)
        for block, attention, upsample in zip(
            self.up_blocks, self.up_attention, self.upsamples, strict=True
        ):
            skip = skips.pop()
            h = attention(block(torch.cat([h, skip], 1), embedding), context, context_mask)
            if not isinstance(upsample, nn.Identity):
                target = skips[-1].shape[-2:]  # 7 -> 14 -> 28: sizes need not be powers of 2
                h = upsample(F.interpolate(h, size=target, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def default_multipliers(image_size: int) -> tuple[int, ...]:
    """Widths per resolution down to 7 or 8 px: 28/32 px -> (1, 2, 4), 64 px -> (1, 2, 4, 4).

    Narrow at full resolution, where a convolution costs most, wide where it is cheap: on a
    CPU the full-resolution level sets the step time, the low ones the capacity."""
    levels, size = 1, image_size
    while size > 8 and size % 2 == 0:
        size //= 2
        levels += 1
    return tuple(min(2**level, 4) for level in range(levels))
