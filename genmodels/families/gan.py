"""Generative adversarial networks (Goodfellow et al. 2014): MLP GAN, DCGAN, conditional DCGAN and
InfoGAN, one `train_step` holding both players and both optimizers.

    min_G max_D V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))]        (Goodfellow et al., Eq. 1)

D outputs a logit l (D = sigmoid(l)); each objective of OBJECTIVES gives D's and G's per-example
losses from l on real and generated data:

    minimax          D: -log D(x) - log(1 - D(G(z)))   G: log(1 - D(G(z)))   (saturating, Eq. 1)
    non_saturating   D: as minimax                     G: -log D(G(z))       (Goodfellow Sec. 3)
    hinge            D: relu(1 - l(x)) + relu(1 + l(G(z)))  G: -l(G(z))     (Lim & Ye 2017)
    least_squares    D: ((l(x) - 1)^2 + l(G(z))^2) / 2      G: (l(G(z)) - 1)^2 / 2  (Mao et al. 2017)
    wgan_gp          D: l(G(z)) - l(x) + w (|grad l(x_hat)| - 1)^2, x_hat = e x + (1 - e) G(z),
                     e ~ U[0, 1]                             G: -l(G(z))   (Gulrajani et al. 2017, Alg. 1)
    relativistic     D: softplus(l(G(z)) - l(x))  G: softplus(l(x) - l(G(z))), x and z paired by
                     row (relativistic pairing; Jolicoeur-Martineau 2019, Huang et al. 2024)

Regularisers of D: R1 = r1_weight / 2 |grad_x l(x)|^2 on real data (Mescheder et al. 2018, Eq. 9),
optionally estimated on a share loss.r1_fraction of the batch (its double backward pass is the
costliest part of a conv step); spectral normalisation of every layer (Miyato et al. 2018), one
power iteration per D step, the vectors in the state; differentiable augmentation of every image
D sees (loss.augment, Zhao et al. 2020), against D memorising a small training set. Top-k G
updates (Sinha et al. 2020): G's loss averages only the fraction of its samples with the lowest G
loss (those D finds most real), from all of them at the start to loss.top_k after
loss.top_k_decay_steps; the rest, e.g. points between two modes, whose gradient points toward no
mode, give no gradient (the top k of each micro-batch under train.grad_accum_steps). D takes
`loss.n_disc` steps per G step inside the jitted step, with fresh noise and the same real batch;
its learning-rate schedule counts its own updates.

Conditional (model.conditional): G gets a label embedding joined to z; D is a projection
discriminator, l(x, y) = psi(h(x)) + embed(y) . h(x) (Miyato & Koyama 2018): unlike joining the
label to D's input it leaves D's trunk unconditional and measured better class fidelity there.
Generated examples take the real batch's labels, so D sees both with the same label distribution.

InfoGAN (Chen et al. 2016): codes c (a categorical of model.info_categorical classes and
model.info_continuous codes ~ U[-1, 1]) join z; a head Q on D's trunk predicts them, and
    L_I = E[log Q(c | G(z, c))] + H(c) <= I(c; G(z, c))                 (Chen et al., Eq. 5)
(cross-entropy for the categorical code, a unit-variance Gaussian log-likelihood for continuous
ones); G and Q (D's parameters) both maximise lambda L_I, with lambda = loss.info_weight on the
categorical code's term and loss.info_continuous_weight on the continuous codes' (Chen et al.
set 1 for discrete codes and smaller values for continuous ones, whose log-likelihood is on a
different scale). With loss.info_decay_fraction f, both lambdas fall linearly to 0 over the last
f of train.num_steps. On the 25-Gaussian grid a 50-way code lets each category settle on one
mode, and Q, which must tell apart the categories that share a mode, keeps pushing them apart:
with lambda 1 throughout, 2-4% of the samples lie 3-6 std from their mode. Faded out over the
last quarter, the modes close up (high quality 1.000 in 4 single-seed runs, 0.981 over 5 seeds in
one run, which lost 1 mode on average: README).

Sampling (sampler.jacobian_truncation = r > 0): z is redrawn where |dG/dz| lies in the top r of
its values under the prior (Tanielian et al. 2020), which removes the samples G spreads on bridges
between separate modes: on the 25-grid, r = 0.05 raised high quality from 0.949 to 0.989 over 5
seeds and left the KL estimate no worse (README).

DCGAN (Radford et al. 2016): weights ~ N(0, 0.02) (model.init_std; the toy MLP GAN uses LeCun
normal, init_std 0, and trains faster with it), batch norm in G (its running statistics in the
state, used for sampling), LeakyReLU 0.2 in D. D has no batch norm: a gradient penalty or R1 of a
batch-normalised critic is not a per-example penalty. G upsamples by sub-pixel convolution
(a 3x3 conv to 4C channels, then depth-to-space; Shi et al. 2016), which sees a 6x6 window of
the output like a stride-2 4x4 ConvTranspose, whose backward pass is 24x slower on XLA:CPU
(DESIGN.md); a 5x5 kernel measured 1.6x slower for the whole step. G's weights are averaged (EMA) for
sampling and evaluation when eval.use_ema.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genmodels import config as config_lib, data as data_lib, viz
from genmodels.classical import kde as kde_lib
from genmodels.config import ConfigError
from genmodels.metrics import labels as labels_lib, modes as modes_lib, sample_quality
from genmodels.nn import nets, noise
from genmodels.training import train_state

PyTree = Any
Batch = dict[str, jax.Array]

CONFIG_SCHEMA = {
    'model': {
        'architecture': str,      # 'mlp' or 'dcgan'
        'latent_dim': int,        # z ~ N(0, I)
        'hidden': tuple,          # MLP: G's hidden widths; D mirrors them
        'channels': tuple,        # DCGAN: D's channels per stride-2 level; G mirrors them
        'conditional': bool,      # class-conditional G and projection D
        'info_categorical': int,  # InfoGAN: classes of the categorical code (0: none)
        'info_continuous': int,   # InfoGAN: number of continuous codes ~ U[-1, 1]
        'spectral_norm': bool,    # spectral normalisation of D's layers
        'init_std': float,        # weights ~ N(0, init_std^2) (DCGAN: 0.02); 0: LeCun normal
        'fourier_features': int,  # MLP D on toys: sin/cos of this many random projections (0: off)
        'fourier_scale': float,   # their frequencies ~ N(0, fourier_scale^2), cycles per unit
    },
    'loss': {
        'n_disc': int,            # D steps per G step
        'gp_weight': float,       # WGAN-GP's penalty weight (objective 'wgan_gp' only)
        'r1_weight': float,       # R1 penalty on real data, any objective (0: off)
        'r1_fraction': float,     # share of the real batch R1 is computed on (1: all)
        'info_weight': float,     # lambda of InfoGAN's mutual-information term (categorical code)
        'info_continuous_weight': float,  # lambda of its continuous codes' term
        'info_decay_fraction': float,  # last share of train.num_steps over which both lambdas
                                       # fall linearly to 0 (0: off)
        'top_k': float,           # fraction of G's samples its update keeps at the end (1: all)
        'top_k_decay_steps': int,  # G steps over which the kept fraction falls from 1 to top_k
        'augment': str,           # DiffAugment of D's inputs: '', 'translation', 'cutout', ...
    },
    'disc_optimizer': config_lib.OPTIMIZER_SCHEMA,  # D's; config.optimizer is G's
    'sampler': {
        'jacobian_truncation': float,  # share of z's prior rejected where |dG/dz| is largest
    },
}
# Sampler settings may change on an existing workdir: eval.py --set sampler.jacobian_truncation=0.03
RESUMABLE_KEYS = ('sampler.jacobian_truncation',)
PROGRESS_METRICS = ('d_loss', 'g_loss')
AUGMENT_STREAM = 7  # fold_in word of the augmentation draws, apart from the objectives' noise
LOG_2PI = math.log(2.0 * math.pi)


def check_config(config: ml_collections.ConfigDict) -> None:
    m, loss = config.model, config.loss
    if m.architecture not in ('mlp', 'dcgan'):
        raise ConfigError(f"model.architecture must be 'mlp' or 'dcgan', got {m.architecture!r}.")
    if min(m.latent_dim, loss.n_disc) < 1 or min(m.info_categorical, m.info_continuous) < 0:
        raise ConfigError('model.latent_dim and loss.n_disc must be >= 1, the InfoGAN code sizes '
                          '>= 0.')
    if m.init_std < 0:
        raise ConfigError(f'model.init_std must be >= 0 (0: LeCun normal), got {m.init_std}.')
    if m.fourier_features < 0 or m.fourier_scale <= 0:
        raise ConfigError(f'model.fourier_features must be >= 0 (0: off) and model.fourier_scale '
                          f'> 0, got {m.fourier_features} and {m.fourier_scale}.')
    if m.fourier_features and m.architecture != 'mlp':
        raise ConfigError("model.fourier_features feeds the MLP discriminator only: set it to 0 "
                          "or model.architecture='mlp'.")
    if not 0 < loss.r1_fraction <= 1:
        raise ConfigError(f'loss.r1_fraction must be in (0, 1] (1: the whole batch), got '
                          f'{loss.r1_fraction}.')
    if not 0 < loss.top_k <= 1 or loss.top_k_decay_steps < 0:
        raise ConfigError(f'loss.top_k must be in (0, 1] (1: off) and loss.top_k_decay_steps '
                          f'>= 0, got {loss.top_k} and {loss.top_k_decay_steps}.')
    unknown = set(filter(None, loss.augment.split(','))) - set(AUGMENTS)
    if unknown:
        raise ConfigError(f'loss.augment={loss.augment!r}: unknown {sorted(unknown)}; use a comma-'
                          f'separated subset of {list(AUGMENTS)}, or \'\' for none.')
    if loss.augment and data_lib.is_toy(config.data.name):
        raise ConfigError("loss.augment transforms images; toy data are points: set it to ''.")
    if not 0 <= config.sampler.jacobian_truncation <= MAX_TRUNCATION:
        raise ConfigError(f'sampler.jacobian_truncation must be in [0, {MAX_TRUNCATION}] (0: '
                          f'off), got {config.sampler.jacobian_truncation}.')
    if not 0 <= loss.info_decay_fraction <= 1:
        raise ConfigError(f'loss.info_decay_fraction must be in [0, 1] (0: off), got '
                          f'{loss.info_decay_fraction}.')
    if min(loss.gp_weight, loss.r1_weight, loss.info_weight, loss.info_continuous_weight) < 0:
        raise ConfigError('loss.gp_weight, r1_weight, info_weight and info_continuous_weight must '
                          'be >= 0.')
    if config.objective == 'wgan_gp' and loss.gp_weight <= 0:
        raise ConfigError('the wgan_gp objective needs loss.gp_weight > 0 (10 in Gulrajani et al.).')
    if m.info_categorical == 1:
        raise ConfigError('model.info_categorical must be 0 (none) or at least 2 classes.')
    if data_lib.is_toy(config.data.name) and m.architecture != 'mlp':
        raise ConfigError("toy data are points, not images: use model.architecture='mlp'.")
    if not data_lib.is_toy(config.data.name) and config.data.scale != '-11':
        raise ConfigError("G's tanh output covers [-1, 1]: set data.scale='-11'.")


def _has_info(config) -> bool:
    return config.model.info_categorical > 0 or config.model.info_continuous > 0


# ------------------------------------------------------------------------------------------------
# Networks

def _kernel_init(std: float):
    """N(0, std^2) weights (DCGAN: std 0.02); std 0: LeCun normal, flax's default."""
    return nn.initializers.normal(std) if std > 0 else nn.initializers.lecun_normal()


def _bn_scale_init(std: float):
    def init(key, shape, dtype=jnp.float32):  # DCGAN: gamma ~ N(1, 0.02)
        return 1.0 + std * jax.random.normal(key, shape, dtype)
    return init if std > 0 else nn.initializers.ones


class Generator(nn.Module):
    architecture: str
    hidden: Sequence[int]
    channels: Sequence[int]
    out_shape: tuple[int, int, int]
    num_classes: int  # 0: unconditional
    image: bool       # tanh output in [-1, 1]; toy points are unbounded (linear output)
    init_std: float   # weights ~ N(0, init_std^2); 0: LeCun normal

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
                h = nn.leaky_relu(self._layer(conv, h, update_stats), 0.2)
            h = h.reshape(h.shape[0], -1)
        logits = self._layer(nn.Dense(1, kernel_init=init, name='logit'), h, update_stats)[:, 0]
        if self.num_classes:  # projection discriminator: + embed(y) . h
            logits = logits + jnp.sum(nn.Embed(self.num_classes, h.shape[-1], embedding_init=init,
                                               name='embed')(labels) * h, -1)
        q = None
        if self.info_outputs:
            q = nn.leaky_relu(nn.Dense(128, kernel_init=init, name='q_hidden')(h), 0.2)
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


def _num_classes(config) -> int:
    return data_lib.dataset_info(config.data).num_classes if config.model.conditional else 0


def networks(config, image_shape) -> tuple[Generator, Discriminator]:
    m = config.model
    g = Generator(m.architecture, tuple(m.hidden), tuple(m.channels), tuple(image_shape),
                  _num_classes(config), image=not data_lib.is_toy(config.data.name),
                  init_std=m.init_std)
    d = Discriminator(m.architecture, tuple(m.hidden), tuple(m.channels), _num_classes(config),
                      m.spectral_norm, m.info_categorical + m.info_continuous, m.init_std,
                      train_state.COMPUTE_DTYPES[config.train.compute_dtype],
                      m.fourier_features, m.fourier_scale)
    return g, d


# ------------------------------------------------------------------------------------------------
# Latents and InfoGAN codes

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


def info_lower_bound(config, q: jax.Array, codes: dict[str, jax.Array],
                     weighted: bool = False) -> jax.Array:
    """L_I = E log Q(c | x) + H(c) per example [B], nats (Chen et al. Eq. 5); Q's outputs q
    [B, K + n]: categorical logits, then continuous means of unit-variance Gaussians. H(c) =
    log K + n log 2 for the uniform categorical and the U[-1, 1] codes. weighted: the loss's
    lambda L_I instead, the categorical term times loss.info_weight and the continuous one times
    loss.info_continuous_weight."""
    m = config.model
    weights = ((config.loss.info_weight, config.loss.info_continuous_weight) if weighted
               else (1.0, 1.0))
    bound = jnp.zeros(q.shape[0])
    if m.info_categorical:
        log_q = jax.nn.log_softmax(q[:, :m.info_categorical])
        term = jnp.take_along_axis(log_q, codes['categorical'][:, None], 1)[:, 0]
        bound += weights[0] * (term + math.log(m.info_categorical))
    if m.info_continuous:
        mean = q[:, m.info_categorical:]
        term = jnp.sum(-0.5 * (codes['continuous'] - mean) ** 2 - 0.5 * LOG_2PI, -1)
        bound += weights[1] * (term + m.info_continuous * math.log(2.0))
    return bound


# ------------------------------------------------------------------------------------------------
# Objectives: (config, critic, real, fake, keys) -> (D's loss [B], G's loss [B]). `critic` maps
# images [B, H, W, C] to logits [B]; `keys` are per-example keys [B] for any noise the objective
# draws. A caller differentiates D's loss in D's parameters (fake held fixed) and G's loss
# through `fake` in G's.

def _minimax(config, critic, real, fake, keys):
    l_real, l_fake = critic(real), critic(fake)
    d_loss = -jax.nn.log_sigmoid(l_real) - jax.nn.log_sigmoid(-l_fake)
    return d_loss, jax.nn.log_sigmoid(-l_fake)  # G minimises log(1 - D(G(z)))


def _non_saturating(config, critic, real, fake, keys):
    d_loss, _ = _minimax(config, critic, real, fake, keys)
    return d_loss, -jax.nn.log_sigmoid(critic(fake))


def _hinge(config, critic, real, fake, keys):
    l_fake = critic(fake)
    return jax.nn.relu(1.0 - critic(real)) + jax.nn.relu(1.0 + l_fake), -l_fake


def _least_squares(config, critic, real, fake, keys):
    l_fake = critic(fake)
    return 0.5 * ((critic(real) - 1.0) ** 2 + l_fake ** 2), 0.5 * (l_fake - 1.0) ** 2


def gradient_penalty(critic, real, fake, keys) -> jax.Array:
    """(|grad l(x_hat)| - 1)^2 per example [B] at x_hat = e x + (1 - e) G(z), e ~ U[0, 1]."""
    e = jax.vmap(jax.random.uniform)(keys).reshape((-1,) + (1,) * (real.ndim - 1))
    x_hat = e * real + (1.0 - e) * fake
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat)  # rows are independent: per example
    norm = jnp.sqrt(jnp.sum(grads ** 2, axis=tuple(range(1, grads.ndim))) + 1e-12)
    return (norm - 1.0) ** 2


def _wgan_gp(config, critic, real, fake, keys):
    l_fake = critic(fake)
    gp = gradient_penalty(critic, real, fake, keys)
    return l_fake - critic(real) + config.loss.gp_weight * gp, -l_fake


def _relativistic(config, critic, real, fake, keys):
    margin = critic(real) - critic(fake)
    return jax.nn.softplus(-margin), jax.nn.softplus(margin)


OBJECTIVES: dict[str, Callable] = {
    'minimax': _minimax,
    'non_saturating': _non_saturating,
    'hinge': _hinge,
    'least_squares': _least_squares,
    'wgan_gp': _wgan_gp,
    'relativistic': _relativistic,
}


def info_weight_scale(config, step: jax.Array) -> jax.Array:
    """The factor on InfoGAN's lambdas at G step `step` (0-based): 1, then falling linearly over
    the last n = loss.info_decay_fraction * train.num_steps steps, to 1 / n at the last step (1
    throughout when n rounds to 0)."""
    n = round(config.loss.info_decay_fraction * config.train.num_steps)
    if n == 0:
        return jnp.ones(())
    return jnp.clip((config.train.num_steps - step) / n, 0.0, 1.0)


def top_k_mean(losses: jax.Array, fraction: jax.Array) -> jax.Array:
    """Mean of the ceil(fraction * B) smallest of `losses` [B] (ties at the cut all count)."""
    k = jnp.clip(jnp.ceil(fraction * losses.shape[0]).astype(jnp.int32), 1, losses.shape[0])
    keep = losses <= jnp.sort(losses)[k - 1]
    return jnp.sum(jnp.where(keep, losses, 0.0)) / jnp.sum(keep)


def top_k_fraction(config, step: jax.Array) -> jax.Array:
    """The fraction of G's samples its update keeps at G step `step`: 1 falling linearly to
    loss.top_k over loss.top_k_decay_steps (at once when 0)."""
    final, steps = config.loss.top_k, config.loss.top_k_decay_steps
    progress = jnp.minimum(step / steps, 1.0) if steps > 0 else 1.0
    return 1.0 - (1.0 - final) * progress


def r1_penalty(critic, real) -> jax.Array:
    """|grad_x l(x)|^2 per example [B] on real data (Mescheder et al. 2018)."""
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(real)
    return jnp.sum(grads ** 2, axis=tuple(range(1, grads.ndim)))


def r1_subset(config, critic, real) -> jax.Array:
    """Batch mean of R1 estimated on the first ceil(loss.r1_fraction * B) real examples, an
    unbiased estimate (batches are shuffled) whose double backward pass costs that fraction of
    the full one. Lazy R1 on every k-th update (Karras et al. 2020) needs a lax.cond, and
    XLA:CPU runs the convolutions inside a cond branch with its slow generic kernel (6.2 s
    against 1.4 s at the top level, DCGAN batch 128), so the saving here comes from fewer rows."""
    n = max(1, math.ceil(config.loss.r1_fraction * real.shape[0]))
    return jnp.mean(r1_penalty(critic, real[:n]))


# Differentiable augmentation (Zhao et al. 2020, "DiffAugment"): every image D sees, real or
# generated, in D's and in G's step, goes through the same random transformation, so D cannot
# memorise a small training set while G still gets gradients through the transformation. Ratios
# and fills as in the paper's code: translation by up to 1/8 of the size with zero padding, a
# cutout square of half the size set to 0 (in model space).
TRANSLATION_RATIO, CUTOUT_RATIO = 0.125, 0.5


def _translation(x, key):
    h, w, c = x.shape
    ry, rx = round(h * TRANSLATION_RATIO), round(w * TRANSLATION_RATIO)
    dy = jax.random.randint(key, (), -ry, ry + 1)
    dx = jax.random.randint(jax.random.fold_in(key, 1), (), -rx, rx + 1)
    padded = jnp.pad(x, ((ry, ry), (rx, rx), (0, 0)))
    return jax.lax.dynamic_slice(padded, (ry - dy, rx - dx, 0), (h, w, c))


def _cutout(x, key):
    h, w, _ = x.shape
    sy, sx = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    cy = jax.random.randint(key, (), 0, h + (1 - sy % 2))
    cx = jax.random.randint(jax.random.fold_in(key, 1), (), 0, w + (1 - sx % 2))
    ys = jnp.arange(h)[:, None] - cy + sy // 2  # inside the square: 0 <= ys < sy
    xs = jnp.arange(w)[None, :] - cx + sx // 2
    inside = (ys >= 0) & (ys < sy) & (xs >= 0) & (xs < sx)
    return jnp.where(inside[..., None], jnp.zeros((), x.dtype), x)


AUGMENTS: dict[str, Callable] = {'translation': _translation, 'cutout': _cutout}


def diff_augment(config, x: jax.Array, keys: jax.Array) -> jax.Array:
    """Images [B, H, W, C] each transformed by loss.augment's ops in order, drawn from its key
    [B] (the first B rows of `keys`, so R1 on a part of the batch keeps its rows' draws)."""
    ops = [AUGMENTS[name] for name in filter(None, config.loss.augment.split(','))]
    if not ops:
        return x

    def one(image, key):
        for i, op in enumerate(ops):
            image = op(image, jax.random.fold_in(key, i))
        return image
    return jax.vmap(one)(x, keys[:x.shape[0]])


# ------------------------------------------------------------------------------------------------
# The family contract

def _optimizers(config):
    n = config.train.num_steps
    return (train_state.make_optimizer(config.optimizer, n),
            train_state.make_optimizer(config.disc_optimizer, n * config.loss.n_disc))


def init(config, rng: jax.Array, example_batch: Batch) -> dict[str, PyTree]:
    x = jnp.asarray(example_batch['image'][:1])
    labels = jnp.asarray(example_batch['label'][:1])
    g, d = networks(config, x.shape[1:])
    k_g, k_d, k_sn = jax.random.split(rng, 3)
    g_in, _ = latents(config, k_g, jnp.zeros((1,), jnp.int32))
    g_vars = g.init(k_g, g_in, labels, train=False)
    d_vars = d.init({'params': k_d}, x, labels)
    tx_g, tx_d = _optimizers(config)
    return {'step': jnp.zeros((), jnp.int32), 'g': g_vars, 'd': d_vars,
            'g_opt': tx_g.init(g_vars['params']), 'd_opt': tx_d.init(d_vars['params']),
            'g_ema': jax.tree.map(jnp.copy, g_vars['params'])}


def _generate(config, g, g_vars, z, labels, train: bool):
    """G(z) and G's updated variables (new batch-norm statistics when train)."""
    if 'batch_stats' in g_vars and train:
        out, updates = g.apply(g_vars, z, labels, train=True, mutable=['batch_stats'])
        return out, {**g_vars, **updates}
    return g.apply(g_vars, z, labels, train=train), g_vars


def train_step(config, state, batch: Batch, rng: jax.Array):
    objective = config_lib.objective(OBJECTIVES, config.objective)
    tx_g, tx_d = _optimizers(config)
    real, index = batch['image'], batch['index']
    labels = batch['label'] if config.model.conditional else jnp.zeros_like(batch['label'])
    g, d = networks(config, real.shape[1:])
    info = _has_info(config)
    info_scale = info_weight_scale(config, state['step'])

    def critic_fn(params, stats, labels, aug_keys, seen=None):
        """x -> D's logits [B]. With a list `seen`, each call also appends (the images D saw, Q's
        outputs), so that InfoGAN's term reuses the objective's pass over the generated batch
        (`q_of`)."""
        def critic(x):
            shown = diff_augment(config, x, aug_keys)  # x itself when loss.augment is off
            logits, q = d.apply({'params': params, **stats}, shown, labels[:x.shape[0]])
            if seen is not None:
                seen.append((shown, q))
            return logits
        return critic

    def q_of(seen, params, stats, fake, labels):
        """Q's outputs on the generated batch `fake`: from the critic's pass when D saw `fake`
        itself (not an augmented copy), else a pass of their own. One pass gives one backward pass
        through D's trunk for both terms; two passes gave two (XLA merges the repeated forward
        pass, not the two backward ones)."""
        for shown, q in seen:
            if shown is fake:
                return q
        return d.apply({'params': params, **stats}, fake, labels)[1]

    # 1. DISCRIMINATOR: n_disc steps, each with fresh z (same real batch). Gradients go through
    # train_state.value_and_grad (micro-batches when train.grad_accum_steps > 1), so the loss
    # functions see a batch dict of per-example arrays.
    def d_step(carry, i):
        d_vars, d_opt = carry
        key = jax.random.fold_in(rng, i)
        g_in, codes = latents(config, key, index)
        fake, _ = _generate(config, g, state['g'], g_in, labels, train=True)
        fake = jax.lax.stop_gradient(fake)
        stats = {k: v for k, v in d_vars.items() if k != 'params'}

        def loss_fn(params, mb):
            seen = []
            critic = critic_fn(params, stats, mb['labels'],
                               noise.keys(jax.random.fold_in(key, AUGMENT_STREAM), mb['index']),
                               seen)
            d_loss, _ = objective(config, critic, mb['real'], mb['fake'],
                                  noise.keys(key, mb['index']))
            terms = {'d_loss': jnp.mean(d_loss)}
            total = terms['d_loss']
            if config.loss.r1_weight > 0:
                terms['r1'] = r1_subset(config, critic, mb['real'])
                total += 0.5 * config.loss.r1_weight * terms['r1']
            if info:
                q = q_of(seen, params, stats, mb['fake'], mb['labels'])
                terms['info_bound'] = jnp.mean(info_lower_bound(config, q, mb['codes']))
                total -= info_scale * jnp.mean(info_lower_bound(config, q, mb['codes'],
                                                                weighted=True))
            # Accuracy of D's decision l > 0 (real) on both sets; one power iteration of SN.
            if stats:
                (l_real, _), new_stats = d.apply({'params': params, **stats}, mb['real'],
                                                 mb['labels'], update_stats=True,
                                                 mutable=list(stats))
            else:
                (l_real, _), new_stats = d.apply({'params': params}, mb['real'], mb['labels']), {}
            terms['d_real_accuracy'] = jnp.mean(l_real > 0)
            terms['d_fake_accuracy'] = jnp.mean(critic(mb['fake']) < 0)
            return total, (terms, {}, new_stats)

        micro = {'real': real, 'fake': fake, 'index': index, 'labels': labels, 'codes': codes}
        (_, (terms, _, new_stats)), grads = train_state.value_and_grad(
            config, loss_fn, d_vars['params'], micro)
        params, d_opt = train_state.apply_updates(tx_d, d_vars['params'], d_opt, grads)
        terms['d_grad_norm'] = optax.global_norm(grads)
        return ({**d_vars, **new_stats, 'params': params}, d_opt), terms

    # A Python loop, not lax.scan: XLA:CPU sends the convolutions of a loop body to a generic
    # kernel (its canonicalisation pass only rewrites top-level ones), which measured 77x slower
    # on the backward pass of D's second convolution (benchmarks/bench_dcgan_step.py --profile).
    carry = (state['d'], state['d_opt'])
    for i in range(config.loss.n_disc):
        carry, d_terms = d_step(carry, i)  # d_terms: the last D step's values
    d_vars, d_opt = carry

    # 2. GENERATOR: one step against the updated D.
    g_key = jax.random.fold_in(rng, config.loss.n_disc)
    g_in, codes = latents(config, g_key, index)
    d_stats = {k: v for k, v in d_vars.items() if k != 'params'}

    def g_loss_fn(g_params, mb):
        fake, new_g = _generate(config, g, {**state['g'], 'params': g_params}, mb['g_in'],
                                mb['labels'], train=True)
        aug_keys = noise.keys(jax.random.fold_in(g_key, AUGMENT_STREAM), mb['index'])
        seen = []
        _, g_loss = objective(config,
                              critic_fn(d_vars['params'], d_stats, mb['labels'], aug_keys, seen),
                              mb['real'], fake, noise.keys(g_key, mb['index']))
        aux = {'g_loss': jnp.mean(g_loss)}
        if config.loss.top_k < 1:
            total = top_k_mean(g_loss, top_k_fraction(config, state['step']))
        else:
            total = aux['g_loss']
        if info:
            q = q_of(seen, d_vars['params'], d_stats, fake, mb['labels'])
            total -= info_scale * jnp.mean(info_lower_bound(config, q, mb['codes'],
                                                            weighted=True))
        return total, (aux, {}, new_g)

    micro = {'g_in': g_in, 'real': real, 'index': index, 'labels': labels, 'codes': codes}
    (_, (g_terms, _, new_g)), grads = train_state.value_and_grad(
        config, g_loss_fn, state['g']['params'], micro)
    g_params, g_opt = train_state.apply_updates(tx_g, state['g']['params'], state['g_opt'],
                                                grads)
    new_state = {
        'step': state['step'] + 1, 'g': {**new_g, 'params': g_params}, 'd': d_vars,
        'g_opt': g_opt, 'd_opt': d_opt,
        'g_ema': train_state.ema_update(state['g_ema'], g_params, config.train.ema_rate),
    }
    metrics = {**d_terms, **g_terms, 'g_grad_norm': optax.global_norm(grads)}
    return new_state, metrics


def eval_params(config, state) -> PyTree:
    """G's variables for sampling: EMA weights when eval.use_ema, with G's running statistics."""
    params = state['g_ema'] if config.eval.use_ema else state['g']['params']
    return {**state['g'], 'params': params}


def sample(config, params, rng: jax.Array, num: int, labels=None, codes=None) -> jax.Array:
    """G(z) for z ~ N(0, I), [num, H, W, C] in the data's value range; class-balanced labels
    (i mod K) when conditional and `labels` is None; InfoGAN codes drawn when `codes` is None;
    z truncated where G is steepest when sampler.jacobian_truncation > 0."""
    index = jnp.arange(num)
    g_in, _ = latents(config, rng, index)
    if codes is not None:
        g_in = join_codes(config, g_in[:, :config.model.latent_dim], codes)
    if labels is None:
        labels = index % max(_num_classes(config), 1)
    g, _ = networks(config, data_lib.dataset_info(config.data).shape)
    if config.sampler.jacobian_truncation:
        g_in = jacobian_truncation(config, g, params, rng, g_in, labels)
    return _g_forward(g, params, g_in, labels)


MAX_TRUNCATION = 0.5
TRUNCATION_CALIBRATION = 10_000  # prior draws whose Jacobian norms set the threshold
TRUNCATION_MISS = 1e-6  # chance that a row finds no draw under the threshold (it keeps its least)
TRUNCATION_STREAM = 11  # fold_in word of the truncation's draws, apart from the samples' own
JACOBIAN_ROWS = 4096  # forward rows per chunk of the Jacobians: latent_dim of them per example


def jacobian_truncation(config, g: Generator, params, rng: jax.Array, g_in: jax.Array,
                        labels: jax.Array) -> jax.Array:
    """G's inputs with each row's z redrawn until |dG/dz|_F falls under the (1 - r) quantile of
    its value over TRUNCATION_CALIBRATION draws of the prior, r = sampler.jacobian_truncation
    (Jacobian-based truncation, Tanielian et al. 2020). G maps a connected latent space onto
    separate modes, so the z that land between modes are where G stretches space most: on the
    25-grid the median norm of samples between modes measured 670 times that inside one. Each
    row keeps its label and codes; its own z is the first candidate, so rows already under the
    threshold are unchanged, and the rest are exact draws from the prior truncated to the
    accepted region. The threshold is one for all codes and labels, so a row whose code leaves
    few z under it may run out of candidates: it keeps its least steep one."""
    r, zd = config.sampler.jacobian_truncation, config.model.latent_dim
    threshold = truncation_threshold(config, g, params, rng)
    _, k_redraw = _truncation_keys(rng)
    index = jnp.arange(len(g_in))
    candidates = jnp.stack([g_in] + [
        g_in.at[:, :zd].set(noise.normal(jax.random.fold_in(k_redraw, t), index, (zd,)))
        for t in range(1, math.ceil(math.log(TRUNCATION_MISS) / math.log(r)))])  # [T, N, ...]
    norms = jnp.stack([jacobian_norms(g, zd, params, c, labels) for c in candidates])
    accepted = norms <= threshold
    pick = jnp.where(accepted.any(0), jnp.argmax(accepted, 0), jnp.argmin(norms, 0))
    return candidates[pick, index]


def truncation_threshold(config, g: Generator, params, rng: jax.Array) -> jax.Array:
    """The (1 - sampler.jacobian_truncation) quantile of |dG/dz|_F over TRUNCATION_CALIBRATION
    draws of the prior (class-balanced labels, codes drawn)."""
    index = jnp.arange(TRUNCATION_CALIBRATION)
    g_in, _ = latents(config, _truncation_keys(rng)[0], index)
    norms = jacobian_norms(g, config.model.latent_dim, params, g_in,
                           index % max(_num_classes(config), 1))
    return jnp.quantile(norms, 1.0 - config.sampler.jacobian_truncation)


def _truncation_keys(rng: jax.Array) -> jax.Array:
    """(the calibration draws' key, the redraws' key)."""
    return jax.random.split(jax.random.fold_in(rng, TRUNCATION_STREAM))


@functools.partial(jax.jit, static_argnums=(0, 1))
def jacobian_norms(g: Generator, latent_dim: int, variables: PyTree, g_in: jax.Array,
                   labels: jax.Array) -> jax.Array:
    """|dG/dz|_F [N] at each row of G's inputs [N, Z + codes], z its first latent_dim entries:
    latent_dim forward-mode passes per row, in chunks of JACOBIAN_ROWS forward rows."""
    def norm(args):
        row, label = args

        def g_of(z):
            x = g.apply(variables, jnp.concatenate([z, row[latent_dim:]])[None], label[None],
                        train=False)
            return x.reshape(-1)

        return jnp.sqrt(jnp.sum(jax.jacfwd(g_of)(row[:latent_dim]) ** 2))

    return jax.lax.map(norm, (g_in, labels), batch_size=max(1, JACOBIAN_ROWS // latent_dim))


@functools.partial(jax.jit, static_argnums=0)
def _g_forward(g: Generator, variables: PyTree, g_in: jax.Array, labels: jax.Array) -> jax.Array:
    """G's forward pass, compiled once per network and shape: the figures and the evaluation call
    `sample` outside any jit, where the layers would otherwise compile op by op."""
    return g.apply(variables, g_in, labels, train=False)


CLASS_SAMPLES = 5000  # generated digits read by the MNIST classifier for label metrics
KDE_SAMPLES = 10_000  # samples of G behind the KDE of the toy KL estimate


def _toy_metrics(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> dict[str, float]:
    """Mode coverage of 2,500 samples (grids), and kl_estimate_nats = E_p[log p(x) - log q(x)]
    over the test points, with q a Gaussian KDE of KDE_SAMPLES samples of G whose bandwidth
    maximises the likelihood of held-out samples (never the test points). G has no density, so
    this is a Parzen-window estimate (Theis et al. 2016): the KDE's smoothing counts against G,
    and it is comparable between GANs, not with a likelihood model's kl_estimate_nats."""
    toy = data_lib.toy_distribution(config.data.name)
    k_modes, k_kde, k_cv = jax.random.split(rng, 3)
    out = {}
    if toy.modes is not None:
        points = np.asarray(sample(config, params, k_modes, 2500)).reshape(2500, -1)
        out |= modes_lib.mode_coverage(points, toy.modes, toy.mode_stds)
    samples = sample(config, params, k_kde, KDE_SAMPLES).reshape(KDE_SAMPLES, -1)
    test = jnp.asarray(data['image'].reshape(len(data['image']), -1))
    kde = kde_lib.fit(samples, 'cv', rng=k_cv)
    out['kde_nll_nats'] = -float(jnp.mean(kde_lib.log_density(kde, test)))
    out['kl_estimate_nats'] = out['kde_nll_nats'] + float(jnp.mean(toy.log_prob(test)))
    return out


def _digits_read(config, params, rng: jax.Array, classes: int, as_code: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(asked [N], read [N]): N = CLASS_SAMPLES generated digits asked for class i mod `classes`
    (as the label of a conditional G, or as InfoGAN's categorical code) and the shipped MNIST
    classifier's reading of each."""
    b = config.eval.batch_size

    def generate(key, asked):
        k_sample, k_cont = jax.random.split(key)
        if as_code:
            cont = jax.random.uniform(k_cont, (b, config.model.info_continuous), minval=-1.0,
                                      maxval=1.0)
            return sample(config, params, k_sample, b,
                          codes={'categorical': asked, 'continuous': cont})
        return sample(config, params, k_sample, b, labels=asked)

    return sample_quality.read_digits(config, generate, rng, CLASS_SAMPLES, classes)


def evaluate(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> dict[str, float]:
    """Toys: mode coverage and a KDE-based KL estimate (`_toy_metrics`). MNIST digits: for a
    conditional G, `label_accuracy` (the classifier reads the label G was given); for InfoGAN,
    `code_class_agreement` (its categorical code against the classifier's digit under the best
    one-to-one matching). The evaluation adds the sample metrics (FID, KID, IS,
    precision/recall) from `sample`."""
    out = {'sampler_jacobian_truncation': config.sampler.jacobian_truncation}
    if data_lib.is_toy(config.data.name):
        return out | _toy_metrics(config, params, data, rng)
    if config.data.name not in sample_quality.MNIST_DATASETS:
        return out
    if config.model.conditional:
        asked, read = _digits_read(config, params, jax.random.fold_in(rng, 0),
                                   _num_classes(config), as_code=False)
        out['label_accuracy'] = labels_lib.label_accuracy(read, asked)
    if config.model.info_categorical:
        k = config.model.info_categorical
        asked, read = _digits_read(config, params, jax.random.fold_in(rng, 1), k, as_code=True)
        out['code_class_agreement'], _ = labels_lib.code_class_agreement(asked, read, k, 10)
    return out


def _decode(config, params, z, labels, codes) -> np.ndarray:
    """G(z, codes) for given z [N, Z], labels [N] and InfoGAN codes."""
    g, _ = networks(config, data_lib.dataset_info(config.data).shape)
    return np.asarray(_g_forward(g, params, join_codes(config, z, codes), labels))


def figures(config, params, data: dict[str, np.ndarray], rng: jax.Array, out_dir: str) -> list[str]:
    """Samples (for 2D toys, over the true log-density); a spherical interpolation between two
    z; a conditional G's rows of one class each (same z down each column); InfoGAN's rows of one
    categorical code each, and for each continuous code the same rows with that code swept
    over [-1, 1] along the columns (z and the other codes fixed)."""
    if data_lib.is_toy(config.data.name):
        toy = data_lib.toy_distribution(config.data.name)
        points = np.asarray(sample(config, params, rng, 2500)).reshape(2500, -1)
        truth = data['image'].reshape(len(data['image']), -1)
        return [viz.save_log_density_2d(truth, {'GAN samples over the true log-density': lambda x:
                                                np.asarray(toy.log_prob(x))},
                                         f'{out_dir}/samples.png', samples=points)]
    m, cols = config.model, 10
    lo, hi = data_lib.value_range(config.data)
    paths = [viz.save_grid(np.asarray(sample(config, params, rng, 64)), f'{out_dir}/samples.png',
                           'GAN samples', lo, hi)]
    _, codes = latents(config, rng, jnp.zeros(cols, jnp.int32))  # one draw of the codes
    codes['continuous'] = jnp.zeros_like(codes['continuous'])
    z = noise.normal(rng, jnp.arange(cols), (m.latent_dim,))       # one z per column
    zero = jnp.zeros(cols, jnp.int32)
    interp = _decode(config, params, viz.slerp(z[0], z[1], cols), zero, codes)
    paths.append(viz.save_rows([interp], f'{out_dir}/interpolation.png', ['spherical'], lo, hi))
    if m.conditional:
        k = _num_classes(config)
        rows = [_decode(config, params, z, zero + c, codes) for c in range(k)]
        paths.append(viz.save_rows(rows, f'{out_dir}/classes.png',
                                   [f'label {c}' for c in range(k)], lo, hi))
    if m.info_categorical:
        k = m.info_categorical
        rows = [_decode(config, params, z, zero, {**codes, 'categorical': zero + c})
                for c in range(k)]
        paths.append(viz.save_rows(rows, f'{out_dir}/info_categorical.png',
                                   [f'categorical code {c}' for c in range(k)], lo, hi))
    sweep = jnp.linspace(-1.0, 1.0, cols)
    for j in range(m.info_continuous):
        cont = jnp.zeros((cols, m.info_continuous)).at[:, j].set(sweep)
        rows = [_decode(config, params, jnp.broadcast_to(z[0], z.shape), zero,
                        {'categorical': zero + c, 'continuous': cont})
                for c in range(max(m.info_categorical, 1))]
        paths.append(viz.save_rows(rows, f'{out_dir}/info_continuous_{j}.png',
                                   [f'code {j} from -1 to 1' + (f', categorical {c}'
                                    if m.info_categorical else '') for c in range(len(rows))],
                                   lo, hi))
    return paths
