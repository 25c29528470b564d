"""Normalizing flows: RealNVP (Dinh et al. 2017) with Glow's ActNorm and invertible 1x1 convolution
(Kingma & Dhariwal 2018) as options. The likelihood is exact, by the change of variables (Rezende &
Mohamed 2015):

    z = f(x),   log p(x) = log N(f(x); 0, I) + log |det df/dx|

f composes invertible layers whose log-determinants are cheap:

    affine coupling  y_A = x_A,  y_B = x_B * exp(s(x_A)) + t(x_A)      log|det| = sum s(x_A)
                     A, B: the two halves of a checkerboard (spatial) or a channel mask, and
                     s = scale * tanh(raw) per channel (RealNVP, Sec. 4.1)
    ActNorm          y = (x + b) * exp(log_scale), per channel            H W sum log_scale
    1x1 convolution  y = x W at every pixel, W [C, C]                     H W log|det W|
    squeeze          2x2 space-to-depth, [H, W, C] -> [H/2, W/2, 4C]      0
    logit            y = logit(a + (1 - 2a) u), u = the pixels in [0, 1]  sum log(1 - 2a) - log q
                     (RealNVP's preprocessing, Sec. 4.1; q = p (1 - p),    - D log(high - low)
                     p = a + (1 - 2a) u; a = model.logit_alpha)

Images (model.architecture 'realnvp'): RealNVP's multi-scale architecture (Sec. 3.6). Every scale
but the last has 3 checkerboard couplings, a squeeze, 3 channel couplings, and then factors out
half of its channels as part of z. The last scale has 4 checkerboard couplings. With
model.actnorm and model.invertible_1x1, every coupling is a Glow step (Sec. 3): ActNorm, the 1x1
convolution, then the coupling. s and t come from a residual conv net whose last conv starts at
zero, so every coupling starts as the identity (Glow, Sec. 3.3). Points (architecture 'mlp', the
2D toys) are a 1x1 image with D channels: model.num_couplings channel couplings with MLP nets, the
halves alternating, where the 1x1 convolution is a learned linear map of R^D.

ActNorm starts as the identity, not at Glow's data-dependent initialisation: the contract's
`init` sees one all-zero example, never data. W starts as a random rotation (log|det W| = 0).

Images must be dequantised (data.dequantize): the flow is a density on the continuous pixels
(x + u) / 256, and eval.json's nll_bits_per_dim is the bound it gives on the discrete data's NLL
(genmodels/metrics/units.py), comparable with the VAE's, the DDPM's and the classical rows'.

Sampling is exact: z ~ N(0, T^2 I), x = f^{-1}(z), T = sampler.temperature (Glow's reduced-
temperature samples, Sec. 5; T = 1 is the model's own distribution).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmodels import config as config_lib, data as data_lib, metrics, viz
from genmodels.config import ConfigError
from genmodels.metrics import units
from genmodels.nn import nets
from genmodels.nn.flows import ActNorm, AffineCoupling, InvertibleConv1x1, space_to_depth
from genmodels.training import train_state

PyTree = Any
Batch = dict[str, jax.Array]

CONFIG_SCHEMA = {
    'model': {
        'architecture': str,     # 'realnvp' (images: multi-scale conv couplings) or 'mlp' (points)
        'num_scales': int,       # realnvp: scales; H and W must divide by 2^(num_scales - 1)
        'num_couplings': int,    # mlp: coupling layers, the halves alternating
        'hidden': int,           # width of each coupling's net: conv channels or MLP units
        'num_blocks': int,       # residual blocks (conv) or extra hidden layers (MLP) per net
        'actnorm': bool,         # ActNorm before every coupling
        'invertible_1x1': bool,  # Glow's 1x1 convolution before every coupling
        'logit_alpha': float,    # images: the logit preprocessing's a, in [0, 0.5)
    },
    'sampler': {
        'temperature': float,    # z ~ N(0, T^2 I); 1: the model's distribution
    },
}

# Sampler settings may change on an existing workdir: eval.py --set sampler.temperature=0.7
RESUMABLE_KEYS = ('sampler.temperature',)
# train.remat='blocks' recomputes these in the backward pass.
REMAT_BLOCKS = ('coupling networks',)
PROGRESS_METRICS = ('loss', 'nll_bits_per_dim')
ARCHITECTURES = ('realnvp', 'mlp')


def check_config(config: ml_collections.ConfigDict) -> None:
    m = config.model
    toy = data_lib.is_toy(config.data.name)
    if m.architecture not in ARCHITECTURES:
        raise ConfigError(f'model.architecture must be one of {ARCHITECTURES}, got '
                          f'{m.architecture!r}.')
    if toy != (m.architecture == 'mlp'):
        raise ConfigError(f"model.architecture={m.architecture!r} does not suit "
                          f"{config.data.name}: use 'mlp' for toy points and 'realnvp' for images.")
    if min(m.hidden, m.num_scales) < 1 or m.num_blocks < 0:
        raise ConfigError('model.hidden and model.num_scales must be >= 1, model.num_blocks >= 0.')
    if not 0.0 <= m.logit_alpha < 0.5:
        raise ConfigError(f'model.logit_alpha must be in [0, 0.5), got {m.logit_alpha}.')
    if not config.sampler.temperature > 0:
        raise ConfigError(f'sampler.temperature must be positive, got '
                          f'{config.sampler.temperature}.')
    if toy:
        if m.num_couplings < 2:
            raise ConfigError(f'model.num_couplings must be >= 2 (each coupling changes half of '
                              f'the coordinates), got {m.num_couplings}.')
        if data_lib.toy_distribution(config.data.name).dim < 2:
            raise ConfigError(f'{config.data.name} is 1D: a coupling flow needs at least 2 '
                              'dimensions to split. Use a 2D toy (e.g. toy_two_moons).')
        return
    if not config.data.dequantize or config.data.binarize:
        raise ConfigError('a flow is a density on continuous data: set data.dequantize=True (and '
                          'data.binarize=False) for a likelihood of the discrete pixels.')
    h, w, _ = data_lib.dataset_info(config.data).shape
    scale = 2 ** (m.num_scales - 1)
    if h % scale or w % scale:
        raise ConfigError(f'{h}x{w} images do not halve {m.num_scales - 1} times: lower '
                          f'model.num_scales.')


# ------------------------------------------------------------------------------------------------
# The flow: a plan of steps over a static shape

def plan(m: ml_collections.ConfigDict, shape: Sequence[int]) -> list[tuple]:
    """The flow's steps, in the forward direction, for inputs [H, W, C]:
    ('coupling', mask, parity, channels) | ('squeeze',) | ('split',)."""
    h, w, c = shape
    if m.architecture == 'mlp':
        return [('coupling', 'channel', i % 2, c) for i in range(m.num_couplings)]
    steps = []
    for scale in range(m.num_scales):
        if scale == m.num_scales - 1:
            return steps + [('coupling', 'checkerboard', i % 2, c) for i in range(4)]
        steps += [('coupling', 'checkerboard', i % 2, c) for i in range(3)]
        steps += [('squeeze',)] + [('coupling', 'channel', i % 2, 4 * c) for i in range(3)]
        steps += [('split',)]
        c = 4 * c - (4 * c) // 2  # the channels that go on; (4c) // 2 are factored out
    return steps


class Flow(nn.Module):
    """x [B, H, W, C] -> (z [B, H W C], log|det dz/dx| [B]); `inverse` maps z back."""
    steps: tuple
    actnorm: bool
    invertible_1x1: bool
    net: str
    hidden: int
    num_blocks: int
    remat: bool = False

    def setup(self):
        layers = []
        for step in self.steps:
            if step[0] != 'coupling':
                layers.append(())
                continue
            _, mask, parity, c = step
            block = []
            if self.actnorm:
                block.append(ActNorm(c))
            if self.invertible_1x1:
                block.append(InvertibleConv1x1(c))
            block.append(AffineCoupling(c, mask, parity, self.net, self.hidden, self.num_blocks,
                                        self.remat))
            layers.append(tuple(block))
        self.layers = tuple(layers)

    def __call__(self, x):
        logdet = jnp.zeros(x.shape[:1], jnp.float32)
        factored = []
        for step, block in zip(self.steps, self.layers):
            if step[0] == 'squeeze':
                x = space_to_depth(x)
            elif step[0] == 'split':
                k = x.shape[-1] // 2
                factored.append(x[..., :k].reshape(x.shape[0], -1))
                x = x[..., k:]
            else:
                for layer in block:
                    x, ld = layer.forward(x)
                    logdet = logdet + ld
        return jnp.concatenate(factored + [x.reshape(x.shape[0], -1)], -1), logdet

    def inverse(self, z, shape: tuple[int, int, int]):
        """z [B, H W C] -> x [B, H, W, C] for inputs of `shape` (H, W, C)."""
        shapes = _shapes(self.steps, shape)  # the shape entering each step
        sizes = [s[0] * s[1] * (s[2] // 2) if step[0] == 'split' else 0  # factored out
                 for step, s in zip(self.steps, shapes)]
        # z = [the factored parts in order, the last scale's output]
        offsets = np.cumsum([0] + [n for n in sizes if n])
        parts = [z[:, offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        final = _after(self.steps[-1], shapes[-1])
        x = z[:, offsets[-1]:].reshape((z.shape[0],) + tuple(final))
        for step, block, s in reversed(list(zip(self.steps, self.layers, shapes))):
            if step[0] == 'squeeze':
                x = nets.depth_to_space(x)
            elif step[0] == 'split':
                h, w, c = s
                x = jnp.concatenate([parts.pop().reshape(z.shape[0], h, w, c // 2), x], -1)
            else:
                for layer in reversed(block):
                    x = layer.inverse(x)
        return x


def _after(step: tuple, shape) -> tuple[int, int, int]:
    h, w, c = shape
    if step[0] == 'squeeze':
        return (h // 2, w // 2, 4 * c)
    if step[0] == 'split':
        return (h, w, c - c // 2)
    return (h, w, c)


def _shapes(steps, shape) -> list[tuple[int, int, int]]:
    """The shape entering each step."""
    out = []
    for step in steps:
        out.append(tuple(shape))
        shape = _after(step, shape)
    return out


def flow_shape(config) -> tuple[int, int, int]:
    """The shape the flow sees: images as they are, D-dim toy points as [1, 1, D]."""
    h, w, c = data_lib.dataset_info(config.data).shape
    return (1, 1, h * w * c) if config.model.architecture == 'mlp' else (h, w, c)


def network(config) -> Flow:
    m = config.model
    return Flow(tuple(plan(m, flow_shape(config))), m.actnorm, m.invertible_1x1,
                'mlp' if m.architecture == 'mlp' else 'conv', m.hidden, m.num_blocks,
                config.train.remat == 'blocks')


# ------------------------------------------------------------------------------------------------
# Preprocessing: data -> the flow's inputs, with its log-determinant

def preprocess(config, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Model inputs [B, H, W, C] -> (flow inputs [B, *flow_shape], log|det| [B]). Toy points are
    used as they are; pixels go to [0, 1], then through the logit."""
    b = images.shape[0]
    if config.model.architecture == 'mlp':
        return images.reshape((b,) + flow_shape(config)), jnp.zeros((b,), jnp.float32)
    low, high = data_lib.value_range(config.data)
    a = config.model.logit_alpha
    p = a + (1 - 2 * a) * data_lib.to_unit(config.data, images)
    y = jnp.log(p) - jnp.log1p(-p)
    dims = int(np.prod(images.shape[1:]))
    logdet = (dims * (math.log(1 - 2 * a) - math.log(high - low))
              - jnp.sum(jnp.log(p) + jnp.log1p(-p), axis=(1, 2, 3)))
    return y, logdet


def postprocess(config, y: jax.Array) -> jax.Array:
    """The inverse of `preprocess`, clipped to the data's value range: [B, H, W, C]."""
    shape = data_lib.dataset_info(config.data).shape
    if config.model.architecture == 'mlp':
        return y.reshape((y.shape[0],) + shape)
    a = config.model.logit_alpha
    u = (jax.nn.sigmoid(y) - a) / (1 - 2 * a)
    return jnp.clip(data_lib.from_unit(config.data, u), *data_lib.value_range(config.data))


def standard_normal_log_density(z: jax.Array) -> jax.Array:
    """log N(z; 0, I) per row of z [B, D]."""
    return -0.5 * jnp.sum(z * z, axis=-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def log_density(config, params, images: jax.Array) -> jax.Array:
    """log p(x) [B], nats: the density of the model inputs (dequantised pixels, toy points)."""
    y, logdet_pre = preprocess(config, images)
    z, logdet = network(config).apply({'params': params}, y)
    return standard_normal_log_density(z) + logdet + logdet_pre


# ------------------------------------------------------------------------------------------------
# The family contract

def nll_objective(config, params, batch: Batch, rng: jax.Array) -> jax.Array:
    """-log p(x) per example [B], nats (the maximum-likelihood objective)."""
    return -log_density(config, params, batch['image'])


OBJECTIVES: dict[str, Callable[..., jax.Array]] = {'mle': nll_objective}


def init(config, rng: jax.Array, example_batch: Batch) -> dict[str, PyTree]:
    y, _ = preprocess(config, jnp.asarray(example_batch['image']))
    params = network(config).init(rng, y)['params']
    return train_state.create(config, params)


def train_step(config, state, batch: Batch, rng: jax.Array):
    objective = config_lib.objective(OBJECTIVES, config.objective)
    dims = int(np.prod(data_lib.dataset_info(config.data).shape))
    prep = data_lib.preprocessing(config.data)

    def loss_fn(params, batch):
        nll = jnp.mean(objective(config, params, batch, rng))
        bpd = units.bits_per_dim(units.discrete_nll_nats(nll, dims, prep), dims)
        return nll / dims, ({'nll_nats': nll, 'nll_bits_per_dim': bpd}, {}, None)

    (loss, (means, _, _)), grads = train_state.value_and_grad(config, loss_fn, state['params'],
                                                             batch)
    new_state, grad_norm = train_state.apply_gradients(config, state, grads)
    return new_state, {'loss': loss, **means, 'grad_norm': grad_norm}


def log_likelihood(config, params, batch: Batch, rng: jax.Array) -> jax.Array:
    """Exact log p(x) [B], nats, of the model inputs (a density on dequantised pixels)."""
    return log_density(config, params, batch['image'])


def sample(config, params, rng: jax.Array, num: int, labels=None, *,
           temperature: float | None = None) -> jax.Array:
    """x = f^{-1}(z), z ~ N(0, T^2 I): [num, H, W, C] in the data's value range."""
    t = config.sampler.temperature if temperature is None else temperature
    shape = flow_shape(config)
    z = t * jax.random.normal(rng, (num, int(np.prod(shape))))
    y = network(config).apply({'params': params}, z, shape, method=Flow.inverse)
    return postprocess(config, y)


def evaluate(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> dict[str, float]:
    """Exact test NLL in nats and bits/dim (for images, the dequantisation bound on the discrete
    pixels); on toys the evaluation adds kl_estimate_nats against the true density."""
    fn = jax.jit(lambda p, x: log_density(config, p, x))
    log_p = data_lib.map_batches(lambda b: fn(params, b['image']), data, config.eval.batch_size)
    dims = int(np.prod(data['image'].shape[1:]))
    return {**metrics.likelihood_record(-float(np.mean(log_p)), dims,
                                        data_lib.preprocessing(config.data), prefix='nll'),
            'sampler_temperature': config.sampler.temperature}


TEMPERATURES = (0.5, 0.75, 1.0)  # rows of the images' temperatures figure


def figures(config, params, data: dict[str, np.ndarray], rng: jax.Array, out_dir: str) -> list[str]:
    """Images: samples.png (sampler.temperature) and temperatures.png (data, then 16 samples at
    each of TEMPERATURES). 2D toys: density.png, the flow's log-density with 500 samples beside
    the true one."""
    num, t = viz.num_samples(config.data, points=500), config.sampler.temperature
    draw = jax.jit(lambda p, k, temp: sample(config, p, k, num, temperature=temp))
    k_sample, k_temp = jax.random.split(rng)
    samples = draw(params, k_sample, t)
    if data_lib.is_toy(config.data.name):
        log_q = jax.jit(lambda pts: log_density(config, params, pts.reshape(
            (len(pts),) + data_lib.dataset_info(config.data).shape)))
        return viz.save_samples(
            config.data, samples, f'{out_dir}/density.png', 'flow log-density, with 500 samples',
            reference=data_lib.load_split(config.data, config.data.train_split)['image'],
            log_density=log_q)
    lo, hi = data_lib.value_range(config.data)
    rows = [data['image'][:16]] + [
        np.asarray(draw(params, jax.random.fold_in(k_temp, i), temp))[:16]
        for i, temp in enumerate(TEMPERATURES)]
    return viz.save_samples(config.data, samples, f'{out_dir}/samples.png',
                            f'flow samples (temperature {t:g})') + [
        viz.save_rows(rows, f'{out_dir}/temperatures.png',
                      ['data'] + [f'T = {temp:g}' for temp in TEMPERATURES], lo, hi)]
