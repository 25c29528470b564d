"""G and D of the GAN family, and G's inputs: z ~ N(0, I) joined to InfoGAN's codes.

DCGAN (Radford et al. 2016): weights ~ N(0, 0.02) (model.init_std; the toy MLP GAN uses LeCun
normal, init_std 0, and trains faster with it), batch norm in G (its running statistics in the
state, used for sampling), LeakyReLU 0.2 in D. D has no batch norm: a gradient penalty or R1 of a
batch-normalised critic is not a per-example penalty. G upsamples by sub-pixel convolution
(a 3x3 conv to 4C channels, then depth-to-space; Shi et al. 2016), which sees a 6x6 window of
the output like a stride-2 4x4 ConvTranspose, whose backward pass is 24x slower on XLA:CPU
(DESIGN.md); a 5x5 kernel measured 1.6x slower for the whole step. Spectral normalisation of
every layer of D (model.spectral_norm; Miyato et al. 2018): one power iteration per D step, the
vectors in the state.

Conditional (model.conditional): G gets a label embedding joined to z; D is a projection
discriminator, l(x, y) = psi(h(x)) + embed(y) . h(x) (Miyato & Koyama 2018): unlike joining the
label to D's input it leaves D's trunk unconditional.

InfoGAN (Chen et al. 2016): codes c (a categorical of model.info_categorical classes and
model.info_continuous codes ~ U[-1, 1]) join z; a head Q on D's trunk predicts them (its loss
term: objectives.info_lower_bound). Chen et al.'s MNIST networks (their Table 1) add what
model.fc_hidden and model.disc_batch_norm give the DCGAN: a fully connected layer of 1,024 units
(G: first, after z; D: last, before the logit and Q's head) and batch normalisation in D after
every layer but the first, and in Q's head. D normalises by each batch's own statistics
(`BatchStatNorm`, no running averages: D is never run in inference mode); under the trainer's
jit the statistics are those of the global batch, so they do not depend on the device count.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genmodels import data as data_lib
from genmodels.metrics import labels as labels_lib
from genmodels.nn import nets, noise
from genmodels.training import train_state

PyTree = Any


def _kernel_init(std: float):
    """N(0, std^2) weights (DCGAN: std 0.02); std 0: LeCun normal, flax's default."""
    return nn.initializers.normal(std) if std > 0 else nn.initializers.lecun_normal()


def _bn_scale_init(std: float):
    def init(key, shape, dtype=jnp.float32):  # DCGAN: gamma ~ N(1, 0.02)
        return 1.0 + std * jax.random.normal(key, shape, dtype)
    return init if std > 0 else nn.initializers.ones


class BatchStatNorm(nn.Module):
    """Batch normalisation by the batch's own mean and variance per feature (over every other
    axis), with a learned scale and bias; it keeps no running statistics."""
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x):
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axes)
        var = jnp.mean(jnp.square(x - mean), axes)
        scale = self.param('scale', nn.initializers.ones, (x.shape[-1],))
        bias = self.param('bias', nn.initializers.zeros, (x.shape[-1],))
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class Generator(nn.Module):
    architecture: str
    hidden: Sequence[int]
    channels: Sequence[int]
    out_shape: tuple[int, int, int]
    num_classes: int  # 0: unconditional
    image: bool       # tanh output in [-1, 1]; toy points are unbounded (linear output)
    init_std: float   # weights ~ N(0, init_std^2); 0: LeCun normal
    fc_hidden: int = 0  # DCGAN: a dense layer of this width (batch norm, ReLU) first (0: none)

    @nn.compact
    def __call__(self, z, labels, train: bool):  # [B, Z] (codes joined), [B] -> [B, H, W, C]
        init = _kernel_init(self.init_std)
        if self.num_classes:
            z = jnp.concatenate([z, nn.Embed(self.num_classes, z.shape[-1], name='embed')(labels)],
                                -1)
        h, w, c = self.out_shape
        if self.architecture == 'mlp':
            x = z
            for i, f in enumerate(self.hidden):
                x = nn.relu(nn.Dense(f, kernel_init=init, name=f'dense_{i}')(x))
            x = nn.Dense(h * w * c, kernel_init=init, name='out')(x).reshape(-1, h, w, c)
        else:
            chans = tuple(self.channels)[::-1]
            scale = 2 ** len(chans)
            if self.fc_hidden:
                z = nn.Dense(self.fc_hidden, kernel_init=init, name='fc')(z)
                z = nn.relu(nn.BatchNorm(not train, momentum=0.9, name='bn_fc',
                                         scale_init=_bn_scale_init(self.init_std))(z))
            x = nn.Dense((h // scale) * (w // scale) * chans[0], kernel_init=init, name='stem')(z)
            x = x.reshape(-1, h // scale, w // scale, chans[0])
            for i in range(len(chans)):
                bn = nn.BatchNorm(not train, momentum=0.9,
                                  scale_init=_bn_scale_init(self.init_std), name=f'bn_{i}')
                x = nn.relu(bn(x))
                width = chans[i + 1] if i + 1 < len(chans) else c
                x = nets.depth_to_space(nn.Conv(4 * width, (3, 3), kernel_init=init,
                                                name=f'up_{i}')(x))
        return jnp.tanh(x) if self.image else x


class Discriminator(nn.Module):
    architecture: str
    hidden: Sequence[int]
    channels: Sequence[int]
    num_classes: int       # 0: unconditional; else a projection head
    spectral_norm: bool
    info_outputs: int      # InfoGAN: categorical logits + continuous means (0: no Q head)
    init_std: float        # weights ~ N(0, init_std^2); 0: LeCun normal
    compute_dtype: Any = jnp.float32  # train.compute_dtype
    fourier_features: int = 0  # MLP: [x, sin 2 pi xB, cos 2 pi xB] in, B fixed (0: x alone)
    fourier_scale: float = 1.0
    fc_hidden: int = 0         # DCGAN: a dense layer of this width last (0: none)
    batch_norm: bool = False   # DCGAN: BatchStatNorm after every layer but the first, and in Q

    def _norm(self, h, name):
        return BatchStatNorm(name=name)(h) if self.batch_norm else h

    def _layer(self, module, x, update_stats):
        if self.spectral_norm:
            # The normalised kernel in the compute dtype: flax's SpectralNorm would return it in
            # float32 (the dtype of its power-iteration vectors), and the layer would compute in
            # float32 under train.compute_dtype = 'bfloat16'.
            dtype = None if self.compute_dtype == jnp.float32 else self.compute_dtype
            return nn.SpectralNorm(module, dtype=dtype)(x, update_stats=update_stats)
        return module(x)

    @nn.compact
    def __call__(self, x, labels, update_stats: bool = False):
        """[B, H, W, C], [B] -> (logits [B], Q's outputs [B, info_outputs] or None)."""
        init = _kernel_init(self.init_std)
        if self.architecture == 'mlp':
            h = x.reshape(x.shape[0], -1)
            if self.fourier_features:
                h = jnp.concatenate([h, *fourier_features(h, self.fourier_features,
                                                          self.fourier_scale)], -1)
            for i, f in enumerate(tuple(self.hidden)[::-1]):
                h = nn.leaky_relu(self._layer(nn.Dense(f, kernel_init=init, name=f'dense_{i}'),
                                              h, update_stats), 0.2)
        else:
            h = x
            for i, c in enumerate(self.channels):
                conv = nn.Conv(c, (4, 4), strides=(2, 2), kernel_init=init, name=f'conv_{i}')
                h = self._layer(conv, h, update_stats)
                h = nn.leaky_relu(self._norm(h, f'bn_{i}') if i else h, 0.2)
            h = h.reshape(h.shape[0], -1)
            if self.fc_hidden:
                h = self._layer(nn.Dense(self.fc_hidden, kernel_init=init, name='fc'), h,
                                update_stats)
                h = nn.leaky_relu(self._norm(h, 'bn_fc'), 0.2)
        logits = self._layer(nn.Dense(1, kernel_init=init, name='logit'), h, update_stats)[:, 0]
        if self.num_classes:  # projection discriminator: + embed(y) . h
            logits = logits + jnp.sum(nn.Embed(self.num_classes, h.shape[-1], embedding_init=init,
                                               name='embed')(labels) * h, -1)
        q = None
        if self.info_outputs:
            q = nn.Dense(128, kernel_init=init, name='q_hidden')(h)
            q = nn.leaky_relu(self._norm(q, 'q_bn'), 0.2)
            q = nn.Dense(self.info_outputs, kernel_init=init, name='q_out')(q)
        return logits, q


def fourier_features(x: jax.Array, num: int, scale: float) -> tuple[jax.Array, jax.Array]:
    """(sin 2 pi xB, cos 2 pi xB) for x [B, D], with B [D, num] ~ N(0, scale^2) drawn once from a
    fixed seed: a constant of the architecture, not a parameter (Tancik et al. 2020). A ReLU MLP
    of raw coordinates learns fine detail slowly: on toy_grid_100 (modes 0.05 wide over a square
    18 wide) D's loss stays at chance without them and falls within 6,000 steps with them."""
    freqs = np.random.default_rng(0).normal(0.0, scale, (x.shape[-1], num)).astype(np.float32)
    phase = 2.0 * math.pi * (x @ jnp.asarray(freqs, x.dtype))
    return jnp.sin(phase), jnp.cos(phase)


def networks(config, image_shape) -> tuple[Generator, Discriminator]:
    m = config.model
    classes = labels_lib.num_classes(config.data, m)
    g = Generator(m.architecture, tuple(m.hidden), tuple(m.channels), tuple(image_shape),
                  classes, image=not data_lib.is_toy(config.data.name), init_std=m.init_std,
                  fc_hidden=m.fc_hidden)
    d = Discriminator(m.architecture, tuple(m.hidden), tuple(m.channels), classes,
                      m.spectral_norm, m.info_categorical + m.info_continuous, m.init_std,
                      train_state.COMPUTE_DTYPES[config.train.compute_dtype],
                      m.fourier_features, m.fourier_scale, m.fc_hidden, m.disc_batch_norm)
    return g, d


def latents(config, rng: jax.Array, index: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """G's input [B, Z + codes] and the codes {'categorical': int [B], 'continuous': [B, n]},
    each example's draw keyed by its index (genmodels.nn.noise)."""
    m = config.model
    k_z, k_cat, k_cont = jax.random.split(rng, 3)
    z = noise.normal(k_z, index, (m.latent_dim,))
    codes = {'categorical': noise.randint(k_cat, index, 0, max(m.info_categorical, 1)),
             'continuous': 2.0 * noise.uniform(k_cont, index, (m.info_continuous,)) - 1.0}
    return join_codes(config, z, codes), codes


def join_codes(config, z: jax.Array, codes: dict[str, jax.Array]) -> jax.Array:
    parts = [z]
    if config.model.info_categorical:
        parts.append(jax.nn.one_hot(codes['categorical'], config.model.info_categorical))
    if config.model.info_continuous:
        parts.append(codes['continuous'])
    return jnp.concatenate(parts, -1)


def generate(config, g, g_vars, z, labels, train: bool):
    """G(z) and G's updated variables (new batch-norm statistics when train)."""
    if 'batch_stats' in g_vars and train:
        out, updates = g.apply(g_vars, z, labels, train=True, mutable=['batch_stats'])
        return out, {**g_vars, **updates}
    return g.apply(g_vars, z, labels, train=train), g_vars


@functools.partial(jax.jit, static_argnums=0)
def g_forward(g: Generator, variables: PyTree, g_in: jax.Array, labels: jax.Array) -> jax.Array:
    """G's forward pass, compiled once per network and shape: the figures and the evaluation call
    `sample` outside any jit, where the layers would otherwise compile op by op."""
    return g.apply(variables, g_in, labels, train=False)
