"""Invertible layers for normalizing flows (genmodels/families/flow.py composes them): RealNVP's
affine coupling (Dinh et al. 2017) with a checkerboard or channel mask, Glow's ActNorm and
invertible 1x1 convolution (Kingma & Dhariwal 2018), and the squeeze space_to_depth.

Each layer maps forward(x) -> (y, log|det dy/dx| [B]) and inverse(y) -> x, x [B, H, W, C].
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def space_to_depth(x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, H/2, W/2, 4C], the inverse of nets.depth_to_space."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // 2, w // 2, 4 * c)


def _pixels(x: jax.Array) -> int:
    return x.shape[1] * x.shape[2]


class ActNorm(nn.Module):
    channels: int

    def setup(self):
        self.log_scale = self.param('log_scale', nn.initializers.zeros, (self.channels,))
        self.bias = self.param('bias', nn.initializers.zeros, (self.channels,))

    def forward(self, x):
        logdet = _pixels(x) * jnp.sum(self.log_scale)
        return (x + self.bias) * jnp.exp(self.log_scale), jnp.full(x.shape[:1], logdet)

    def inverse(self, y):
        return y * jnp.exp(-self.log_scale) - self.bias


class InvertibleConv1x1(nn.Module):
    channels: int

    def setup(self):
        self.kernel = self.param('kernel', nn.initializers.orthogonal(), (self.channels,) * 2)

    def forward(self, x):
        logdet = _pixels(x) * jnp.linalg.slogdet(self.kernel)[1]
        return x @ self.kernel, jnp.full(x.shape[:1], logdet)

    def inverse(self, y):
        return y @ jnp.linalg.inv(self.kernel)


class CouplingNet(nn.Module):
    """(s, t) from the conditioning half: a residual conv net (images) or an MLP (points), its
    last layer zero so that the coupling starts as the identity."""
    kind: str          # 'conv' or 'mlp'
    hidden: int
    num_blocks: int
    out_channels: int

    @nn.compact
    def __call__(self, h):
        if self.kind == 'mlp':
            h = h.reshape(h.shape[0], -1)
            for i in range(self.num_blocks + 1):
                h = nn.relu(nn.Dense(self.hidden, name=f'dense_{i}')(h))
            out = nn.Dense(self.out_channels, kernel_init=nn.initializers.zeros, name='out')(h)
            return out.reshape(out.shape[0], 1, 1, -1)
        h = nn.Conv(self.hidden, (3, 3), name='conv_in')(h)
        for i in range(self.num_blocks):
            y = nn.Conv(self.hidden, (3, 3), name=f'block_{i}_a')(nn.relu(h))
            h = h + nn.Conv(self.hidden, (3, 3), name=f'block_{i}_b')(nn.relu(y))
        return nn.Conv(self.out_channels, (3, 3), kernel_init=nn.initializers.zeros,
                       name='conv_out')(nn.relu(h))


def checkerboard(h: int, w: int, parity: int) -> jax.Array:
    """[H, W, 1]: 1 where a pixel conditions (passes through), 0 where it is transformed."""
    ij = np.add.outer(np.arange(h), np.arange(w))
    return jnp.asarray(((ij + parity) % 2 == 0)[..., None], jnp.float32)


class AffineCoupling(nn.Module):
    channels: int
    mask: str          # 'checkerboard' or 'channel'
    parity: int        # which half conditions
    net: str           # 'conv' or 'mlp'
    hidden: int
    num_blocks: int
    remat: bool = False  # recompute the coupling net's activations in the backward pass

    def setup(self):
        c = self.channels
        out = c if self.mask == 'checkerboard' else c - self._split()
        # jax.checkpoint through flax's lifted nn.remat: the same parameter names either way
        net = nn.remat(CouplingNet) if self.remat else CouplingNet
        self.coupling_net = net(self.net, self.hidden, self.num_blocks, 2 * out)
        self.scale = self.param('scale', nn.initializers.ones, (out,))

    def _split(self) -> int:
        """Channel masks: the conditioning half is channels [:k] (parity 0) or [C - k:]."""
        return self.channels // 2

    def _halves(self, x):
        k = self._split()
        if self.parity:
            return x[..., x.shape[-1] - k:], x[..., :x.shape[-1] - k]
        return x[..., :k], x[..., k:]

    def _join(self, cond, changed):
        return (jnp.concatenate([changed, cond], -1) if self.parity
                else jnp.concatenate([cond, changed], -1))

    def _s_t(self, h):
        s_raw, t = jnp.split(self.coupling_net(h), 2, axis=-1)
        return self.scale * jnp.tanh(s_raw), t

    def forward(self, x):
        if self.mask == 'checkerboard':
            b = checkerboard(x.shape[1], x.shape[2], self.parity)
            s, t = self._s_t(jnp.concatenate([x * b, jnp.broadcast_to(b, x.shape[:3] + (1,))], -1))
            s, t = s * (1 - b), t * (1 - b)
            return x * jnp.exp(s) + t, jnp.sum(s, axis=(1, 2, 3))
        cond, x_b = self._halves(x)
        s, t = self._s_t(cond)
        return self._join(cond, x_b * jnp.exp(s) + t), jnp.sum(s, axis=(1, 2, 3))

    def inverse(self, y):
        if self.mask == 'checkerboard':
            b = checkerboard(y.shape[1], y.shape[2], self.parity)
            s, t = self._s_t(jnp.concatenate([y * b, jnp.broadcast_to(b, y.shape[:3] + (1,))], -1))
            return (y - t * (1 - b)) * jnp.exp(-s * (1 - b))
        cond, y_b = self._halves(y)
        s, t = self._s_t(cond)
        return self._join(cond, (y_b - t) * jnp.exp(-s))
