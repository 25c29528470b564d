"""Denoiser networks for diffusion models: the DDPM U-Net and an MLP for toy data.

The U-Net follows Ho et al. 2020 (Denoising Diffusion Probabilistic Models, Appendix B), which
builds on the PixelCNN++ backbone (Salimans et al. 2017) and the Wide ResNet block (Zagoruyko &
Komodakis 2016):
- a sinusoidal embedding of the timestep (Vaswani et al. 2017, Section 3.5) through a two-layer MLP
  of width 4 * channels, added per channel inside every residual block;
- `len(channel_mults)` resolution levels of `num_res_blocks` residual blocks each, with
  self-attention after each block at the sizes in `attention_resolutions`, and a middle of
  block -> attention -> block at the lowest resolution (Ho et al. always have that attention);
- U-Net skip connections (Ronneberger et al. 2015) concatenated on the channel axis: the up path
  runs `num_res_blocks + 1` blocks per level, one per stored down-path activation;
- GroupNorm (Wu & He 2018) throughout, 32 groups where the width allows two channels a group (see
  `num_groups`); the last conv of each residual branch, each attention output projection and the
  output conv start at zero, so every block starts as the identity and the untrained network
  predicts 0.

Downsampling is a stride-2 3x3 conv. Upsampling is a nearest-neighbour resize followed by a 3x3 conv
rather than a strided ConvTranspose: XLA:CPU runs the backward pass of a strided ConvTranspose far
slower than PyTorch does (measured: docs/benchmarks.md).

Class conditioning adds a learned class embedding to the time embedding. The table has
`num_classes + 1` rows: the last index, `num_classes`, means "no label", so classifier-free guidance
(Ho & Salimans 2022) can drop labels during training and ask for the unconditional output.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

zeros = nn.initializers.zeros

# The config keys of these networks, shared by the families built on them (ddpm, score): their
# `model` schema section starts with these.
MODEL_SCHEMA = {
    'architecture': str,            # 'unet' (images) or 'mlp' (toy points)
    'channels': int,                # U-Net base width
    'channel_mults': tuple,         # U-Net width multiplier per resolution level
    'num_res_blocks': int,
    'attention_resolutions': tuple,  # level heights with self-attention, e.g. (7,)
    'num_heads': int,
    'dropout': float,
    'hidden': tuple,                # MLP denoiser widths
    'embed_dim': int,               # MLP denoiser's time (noise level, class) embedding width
}


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal embedding of timesteps (Vaswani et al. 2017, Section 3.5; Ho et al. 2020).

    t [B] (int or float; embedded as float) -> [B, dim] = [sin(t * f), cos(t * f)] with frequencies
    f_i = exp(-log(max_period) * i / half) for i < half = dim // 2. An odd `dim` gets a final zero.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]             # [B, half]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def num_groups(channels: int, max_groups: int = 32) -> int:
    """The largest divisor of `channels` that is at most `max_groups` (32 as in Wu & He 2018) and
    leaves at least 2 channels per group (when channels > 1).

    A group of one channel is instance norm, which subtracts a per-channel constant exactly: it
    would erase the time and class embedding that `ResBlock` adds just before its second norm, and
    with it every dependence of the output on t and the label. Widths of 64 and up get 32 groups.
    """
    most = min(max_groups, max(1, channels // 2))
    return max(g for g in range(1, most + 1) if channels % g == 0)


def group_norm(x: jax.Array, name: str) -> jax.Array:
    """GroupNorm, num_groups(C) groups: [B, ..., C] -> [B, ..., C]. Call it in a compact method."""
    return nn.GroupNorm(num_groups=num_groups(x.shape[-1]), name=name)(x)


class Conditioning(nn.Module):
    """Timestep (and optional class) embedding shared by every block of a denoiser.

    t [B] -> sinusoid [B, sinusoid_dim] -> Dense(features) -> SiLU -> Dense(features), plus a
    learned class embedding [B, features] when `num_classes > 0` (row `num_classes` is "no label";
    `labels=None` means no label for every example).
    """

    features: int
    sinusoid_dim: int
    num_classes: int = 0

    @nn.compact
    def __call__(self, t: jax.Array, labels: jax.Array | None, dtype=jnp.float32) -> jax.Array:
        """`dtype`: the denoiser input's, so a bfloat16 input keeps the whole network in bfloat16
        (the sinusoid itself is computed in float32: t * f needs its precision)."""
        emb = timestep_embedding(t, self.sinusoid_dim).astype(dtype)
        emb = nn.Dense(self.features, name='time_dense_0')(emb)
        emb = nn.Dense(self.features, name='time_dense_1')(nn.silu(emb))
        if labels is not None and not self.num_classes:
            raise ValueError('labels were given to an unconditional denoiser (num_classes = 0); '
                             'set model.num_classes or pass labels=None.')
        if self.num_classes:
            if labels is None:
                labels = jnp.full(t.shape, self.num_classes, jnp.int32)
            emb = emb + nn.Embed(self.num_classes + 1, self.features, name='class_embed')(labels)
        return emb                                                            # [B, features]


class ResBlock(nn.Module):
    """Wide ResNet block with the conditioning added per channel (Ho et al. 2020, Appendix B).

    x [B, H, W, C], emb [B, E] -> [B, H, W, out_channels]:
    GroupNorm -> SiLU -> Conv3x3 -> + Dense(SiLU(emb)) -> GroupNorm -> SiLU -> Dropout -> Conv3x3
    (zero-initialised), plus the input, through a 1x1 conv when C != out_channels.
    """

    out_channels: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array, deterministic: bool = True) -> jax.Array:
        h = nn.silu(group_norm(x, 'norm_0'))
        h = nn.Conv(self.out_channels, (3, 3), name='conv_0')(h)
        h = h + nn.Dense(self.out_channels, name='emb_proj')(nn.silu(emb))[:, None, None, :]
        h = nn.silu(group_norm(h, 'norm_1'))
        h = nn.Dropout(self.dropout, deterministic=deterministic)(h)
        h = nn.Conv(self.out_channels, (3, 3), kernel_init=zeros, name='conv_1')(h)
        if x.shape[-1] != self.out_channels:
            x = nn.Conv(self.out_channels, (1, 1), name='skip')(x)
        return x + h


class AttentionBlock(nn.Module):
    """Residual self-attention over the H * W positions (Ho et al. 2020; Vaswani et al. 2017).

    x [B, H, W, C] -> [B, H, W, C]: GroupNorm, then `num_heads`-head scaled dot-product attention
    (C must be divisible by num_heads), then a zero-initialised output projection added to x.
    """

    num_heads: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, height, width, c = x.shape
        if c % self.num_heads:
            raise ValueError(f'{c} channels cannot be split into {self.num_heads} attention heads; '
                             'choose num_heads dividing every attended level\'s channel count.')
        d = c // self.num_heads
        h = group_norm(x, 'norm').reshape(b, height * width, c)
        qkv = nn.Dense(3 * c, name='qkv')(h).reshape(b, height * width, 3, self.num_heads, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]                    # [B, N, heads, d]
        logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(d)
        h = jnp.einsum('bhqk,bkhd->bqhd', jax.nn.softmax(logits, axis=-1), v)
        h = nn.Dense(c, kernel_init=zeros, name='proj_out')(h.reshape(b, height * width, c))
        return x + h.reshape(b, height, width, c)


class Downsample(nn.Module):
    """Stride-2 3x3 conv with SAME padding: [B, H, W, C] -> [B, ceil(H/2), ceil(W/2), C]."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(x.shape[-1], (3, 3), strides=(2, 2), padding='SAME', name='conv')(x)


class Upsample(nn.Module):
    """Nearest-neighbour resize to `size` (H', W'), then a 3x3 conv: [B, H, W, C] -> [B, H', W', C].

    `size` is the matching skip connection's spatial size, normally (2H, 2W); when a level was odd
    (7 -> 4 on the way down) it is 2H - 1, and `jax.image.resize` maps the 4 rows onto 7. Exact
    doubling copies each pixel into a 2x2 block instead, which equals the resize but whose backward
    pass is a reduction rather than the gather's scatter (measured faster on XLA:CPU;
    docs/benchmarks.md).
    """

    @nn.compact
    def __call__(self, x: jax.Array, size: tuple[int, int]) -> jax.Array:
        b, h, w, c = x.shape
        if tuple(size) == (2 * h, 2 * w):
            x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
            x = x.reshape(b, 2 * h, 2 * w, c)
        else:
            x = jax.image.resize(x, (b, *size, c), 'nearest')
        return nn.Conv(c, (3, 3), name='conv')(x)


class UNet(nn.Module):
    """The DDPM noise-prediction U-Net (Ho et al. 2020, Appendix B): see the module docstring.

    x [B, H, W, C], t [B] (int or float) -> [B, H, W, out_channels or C].

    Level i (i = 0 .. len(channel_mults) - 1) has channels * channel_mults[i] channels and
    spatial size s_i, with s_0 = H and s_{i+1} = ceil(s_i / 2): there are exactly
    len(channel_mults) - 1 downsamplings, so 28x28 with three levels runs 28 -> 14 -> 7. Odd sizes
    are fine: the up path resizes to each skip connection's exact size (see `Upsample`).
    `attention_resolutions` lists the level heights s_i at which attention follows each residual
    block; a size that no level has is an error rather than silently no attention.
    """

    channels: int                                  # Base width; Ho et al. use 128 for CIFAR-10.
    channel_mults: Sequence[int]                   # Width multiplier per level, e.g. (1, 2, 2).
    num_res_blocks: int                            # Residual blocks per level on the way down.
    attention_resolutions: Sequence[int]           # Level heights with attention, e.g. (16,).
    dropout: float = 0.0
    num_classes: int = 0                           # 0: unconditional; label num_classes: no label.
    out_channels: int | None = None                # None: C (2C for a learned variance).
    num_heads: int = 1
    remat: bool = False                            # recompute each block in the backward pass

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, labels: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        levels = len(self.channel_mults)
        sizes = [x.shape[1]]
        for _ in range(levels - 1):
            sizes.append(-(-sizes[-1] // 2))
        missing = sorted(set(self.attention_resolutions) - set(sizes))
        if missing:
            raise ValueError(f'attention_resolutions has sizes {missing} that no level of this '
                             f'{x.shape[1]}x{x.shape[2]} input has (level sizes {sizes}); use '
                             'some of those.')
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        emb = Conditioning(4 * self.channels, self.channels, self.num_classes,
                           name='conditioning')(t, labels, x.dtype)          # [B, 4 * channels]

        # With remat, each block's activations are recomputed in the backward pass instead of
        # kept (jax.checkpoint through flax's lifted nn.remat; `deterministic`, argument 3
        # counting the module, is static). The blocks keep their names, so parameters and
        # checkpoints are the same either way.
        res_block = nn.remat(ResBlock, static_argnums=(3,)) if self.remat else ResBlock
        attention_block = nn.remat(AttentionBlock) if self.remat else AttentionBlock

        def res(name: str, h: jax.Array, c: int) -> jax.Array:
            return res_block(c, self.dropout, name=name)(h, emb, not train)

        def attend(name: str, h: jax.Array) -> jax.Array:
            return attention_block(self.num_heads, name=name)(h)

        h = nn.Conv(self.channels, (3, 3), name='conv_in')(x)
        skips = [h]
        for i, mult in enumerate(self.channel_mults):
            for j in range(self.num_res_blocks):
                h = res(f'down_{i}_res_{j}', h, self.channels * mult)
                if sizes[i] in self.attention_resolutions:
                    h = attend(f'down_{i}_attn_{j}', h)
                skips.append(h)
            if i < levels - 1:
                h = Downsample(name=f'down_{i}_downsample')(h)
                skips.append(h)

        c_mid = h.shape[-1]
        h = attend('mid_attn', res('mid_res_0', h, c_mid))
        h = res('mid_res_1', h, c_mid)

        for i, mult in reversed(list(enumerate(self.channel_mults))):
            for j in range(self.num_res_blocks + 1):
                h = res(f'up_{i}_res_{j}', jnp.concatenate([h, skips.pop()], axis=-1),
                        self.channels * mult)
                if sizes[i] in self.attention_resolutions:
                    h = attend(f'up_{i}_attn_{j}', h)
            if i > 0:
                h = Upsample(name=f'up_{i}_upsample')(h, skips[-1].shape[1:3])

        h = nn.silu(group_norm(h, 'norm_out'))
        out_channels = self.out_channels or x.shape[-1]
        return nn.Conv(out_channels, (3, 3), kernel_init=zeros, name='conv_out')(h)


class MLPDenoiser(nn.Module):
    """A denoiser for low-dimensional toy data, stored as images of shape (D, 1, 1).

    x [B, D, 1, C], t [B] (int or float) -> [B, D, 1, out_channels or C]. The flattened x is
    concatenated with the conditioning (see `Conditioning`; width `embed_dim`) and passed through
    Dense layers of widths `hidden` with SiLU, then a linear output layer.
    """

    hidden: Sequence[int]                          # Hidden widths, e.g. (256, 256, 256).
    embed_dim: int = 128                           # Width of the time (and class) embedding.
    num_classes: int = 0                           # 0: unconditional; label num_classes: no label.
    out_channels: int | None = None                # None: C (2C for a learned variance).

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, labels: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        del train  # No dropout: the signature matches UNet's so a family can call either.
        b, d, w, c = x.shape
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (b,))
        emb = Conditioning(self.embed_dim, self.embed_dim, self.num_classes,
                           name='conditioning')(t, labels, x.dtype)
        h = jnp.concatenate([x.reshape(b, -1), emb], axis=-1)
        for i, width in enumerate(self.hidden):
            h = nn.silu(nn.Dense(width, name=f'dense_{i}')(h))
        out_channels = self.out_channels or c
        return nn.Dense(d * w * out_channels, name='out')(h).reshape(b, d, w, out_channels)
