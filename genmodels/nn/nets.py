"""flax.linen building blocks shared by the families: MLPs, conv trunks, the classifier convnet.

Upsampling is sub-pixel (conv to 4C channels, then depth-to-space) rather than a strided
ConvTranspose: XLA:CPU runs the backward pass of a strided ConvTranspose far slower than PyTorch
does (measured: docs/benchmarks.md), and sub-pixel convolution is equally expressive (Shi et al.
2016).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
    """Dense layers with ReLU between them; the last layer is linear."""

    features: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, f in enumerate(self.features):
            x = nn.Dense(f, name=f'dense_{i}')(x)
            if i < len(self.features) - 1:
                x = nn.relu(x)
        return x


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
    """[B, H, W, C * block**2] -> [B, H * block, W * block, C]."""
    b, h, w, c = x.shape
    c_out = c // (block * block)
    x = x.reshape(b, h, w, block, block, c_out)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * block, w * block, c_out)


class ConvEncoder(nn.Module):
    """Stride-2 convolutions halve the resolution at each level, then a dense head."""

    channels: Sequence[int]
    out_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # [B, H, W, C] -> [B, out_features]
        for i, c in enumerate(self.channels):
            x = nn.relu(nn.Conv(c, (4, 4), strides=(2, 2), name=f'conv_{i}')(x))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.out_features, name='head')(x)


class ConvDecoder(nn.Module):
    """Dense to a coarse grid, then sub-pixel upsampling by 2 per level, mirroring ConvEncoder."""

    channels: Sequence[int]  # Encoder order; the decoder walks it backwards.
    out_shape: tuple[int, int, int]  # (H, W, C) of the output image.

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:  # [B, D] -> [B, H, W, C] (unnormalised)
        levels = len(self.channels)
        h, w, c_out = self.out_shape
        scale = 2 ** levels
        if h % scale or w % scale:
            raise ValueError(f'image size {h}x{w} is not divisible by 2**{levels}; use fewer conv levels.')
        chans = list(self.channels)[::-1]
        x = nn.Dense((h // scale) * (w // scale) * chans[0], name='stem')(z)
        x = nn.relu(x.reshape(z.shape[0], h // scale, w // scale, chans[0]))
        for i in range(levels):
            c_next = chans[i + 1] if i + 1 < levels else chans[-1]
            x = nn.Conv(4 * c_next, (3, 3), name=f'up_{i}')(x)
            x = nn.relu(depth_to_space(x))
        return nn.Conv(c_out, (3, 3), name='out')(x)


class ConvNet(nn.Module):
    """3x3 stride-2 convs with ReLU (28 -> 14 -> 7 -> 4), a dense ReLU `features` layer, logits:
    the classifier family's network and the shipped MNIST feature extractor's."""

    channels: Sequence[int]
    features: int
    num_classes: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        """[B, H, W, C] -> (features [B, features], logits [B, num_classes])."""
        for i, c in enumerate(self.channels):
            x = nn.relu(nn.Conv(c, (3, 3), strides=(2, 2), name=f'conv_{i}')(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x.reshape(x.shape[0], -1))
        h = nn.relu(nn.Dense(self.features, name='features')(x))
        logits = nn.Dense(self.num_classes, name='logits')(
            nn.Dropout(self.dropout, deterministic=not train)(h))
        return h, logits
