"""Variational autoencoder (Kingma & Welling 2014) and its importance-weighted bound (Burda et al.
2016).

    log p(x) >= IWAE_k = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)] >= ELBO = IWAE_1   (Burda Thm 1)
    ELBO = E_q[log p(x | z)] - KL(q(z | x) || p(z))                                (K&W Eq. 3)

The prior p(z) is N(0, I) (the KL in closed form), or a learned mixture, its KL then estimated
from the one z drawn: a mixture of K Gaussians in latent space ('mog'), or VampPrior's mixture of
the posteriors of K learned pseudo-inputs, p(z) = (1/K) sum_k q(z | u_k) (Tomczak & Welling
2018, Eq. 9).

With model.top_latent_dim > 0 the model has two stochastic layers (Burda et al. 2016, Sec. 5):
q(z1 | x) q(z2 | z1) and p(z2) p(z1 | z2) p(x | z1), the prior above on the top layer z2, and
the ELBO and IWAE weights log p(x, z1, z2) - log q(z1, z2 | x) from the drawn z1, z2.

MLP or convolutional encoder/decoder; Bernoulli likelihood for dynamically binarised data, Gaussian
(learned per-pixel scale) for uniformly dequantised data, or a discretised Gaussian for the 8-bit
pixels themselves: the decoder gives each pixel a mean and a scale, and P(x | z) is that Gaussian's
mass over the pixel's bin, the edge bins open to infinity (as DDPM's decoder, Ho et al. 2020
Eq. 13), so the bound is on the discrete data's likelihood with no dequantisation. Every per-example random draw is keyed by
the example's global index, so the result does not depend on the number of devices.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmodels import config as config_lib, data as data_lib, metrics, viz
from genmodels.config import ConfigError
from genmodels.nn import diffusion, nets, noise
from genmodels.training import train_state

PyTree = Any
Batch = dict[str, jax.Array]

CONFIG_SCHEMA = {
    'model': {
        'architecture': str,    # 'mlp' or 'conv'
        'hidden': tuple,        # MLP encoder widths; the decoder mirrors them
        'channels': tuple,      # conv encoder channels per stride-2 level; the decoder mirrors them
        'latent_dim': int,
        'likelihood': str,      # 'bernoulli', 'gaussian' or 'discretized_gaussian'
        'prior': str,           # 'standard' N(0, I), 'mog' or 'vamp' (learned mixtures)
        'prior_components': int,  # K of a mixture prior (VampPrior's pseudo-inputs)
        'top_latent_dim': int,  # a second stochastic layer z2 of this size above z1 (0: none)
        'top_hidden': tuple,    # MLP widths of q(z2 | z1); p(z1 | z2) mirrors them
    },
    'loss': {
        'beta': float,          # weight of the KL term (beta-VAE, Higgins et al. 2017)
        'kl_warmup_steps': int,  # beta ramps linearly from 0 over these steps (0: no warm-up)
        'num_samples': int,     # k for the 'iwae' training objective
    },
}

LOG_2PI = math.log(2.0 * math.pi)
LIKELIHOODS = ('bernoulli', 'gaussian', 'discretized_gaussian')
PRIORS = ('standard', 'mog', 'vamp')
# Keys added to the schema after runs were saved without them, with the value that reproduces
# those runs: genmodels.families.read_saved fills them into a saved VAE config.
ADDED_KEYS = {'model.prior': 'standard', 'model.prior_components': 0,
              'model.top_latent_dim': 0, 'model.top_hidden': ()}
# The discretised Gaussian's log scale is held at or above this (a scale of 1e-3 of the value
# range, a quarter of a 256-level bin on [0, 1]): below it a pixel's bin holds all the mass anyway.
MIN_LOG_SCALE = math.log(1e-3)


def check_config(config: ml_collections.ConfigDict) -> None:
    m = config.model
    if m.architecture not in ('mlp', 'conv'):
        raise ConfigError(f"model.architecture must be 'mlp' or 'conv', got {m.architecture!r}.")
    if m.likelihood == 'bernoulli' and not config.data.binarize:
        raise ConfigError('a Bernoulli likelihood needs binary data: set data.binarize=True.')
    if m.likelihood == 'gaussian' and not config.data.dequantize:
        raise ConfigError('a Gaussian likelihood needs dequantised data for a valid likelihood: '
                          'set data.dequantize=True.')
    if m.likelihood == 'discretized_gaussian' and (
            config.data.binarize or config.data.dequantize or data_lib.is_toy(config.data.name)):
        raise ConfigError('a discretised Gaussian likelihood models the integer pixels '
                          'themselves: set data.binarize=False and data.dequantize=False, on '
                          'image data.')
    if m.likelihood not in LIKELIHOODS:
        raise ConfigError(f'model.likelihood must be one of {LIKELIHOODS}, got '
                          f'{m.likelihood!r}.')
    if m.prior not in PRIORS:
        raise ConfigError(f'model.prior must be one of {PRIORS}, got {m.prior!r}.')
    if m.prior != 'standard' and m.prior_components < 1:
        raise ConfigError(f'model.prior={m.prior!r} is a mixture: set model.prior_components to '
                          f'its number of components (at least 1), got {m.prior_components}.')
    if m.top_latent_dim < 0:
        raise ConfigError(f'model.top_latent_dim must be 0 (one stochastic layer) or the size of '
                          f'the second, got {m.top_latent_dim}.')
    if config.loss.num_samples < 1 or m.latent_dim < 1:
        raise ConfigError('loss.num_samples and model.latent_dim must be at least 1.')


# ------------------------------------------------------------------------------------------------
# Networks

def _networks(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]):
    m = config.model
    image_shape = _decoder_shape(config, image_shape)
    d = int(np.prod(image_shape))
    if m.architecture == 'mlp':
        encoder = nets.MLP(tuple(m.hidden) + (2 * m.latent_dim,))
        decoder = nets.MLP(tuple(m.hidden)[::-1] + (d,))
    else:
        encoder = nets.ConvEncoder(tuple(m.channels), 2 * m.latent_dim)
        decoder = nets.ConvDecoder(tuple(m.channels), tuple(image_shape))
    return encoder, decoder


def _prior_dim(m: ml_collections.ConfigDict) -> int:
    """The size of the latent the prior is on: the top layer's with two layers, else z's."""
    return m.top_latent_dim or m.latent_dim


def _top_networks(config: ml_collections.ConfigDict):
    """q(z2 | z1) and p(z1 | z2): MLPs giving a mean and a log variance each."""
    m = config.model
    return (nets.MLP(tuple(m.top_hidden) + (2 * m.top_latent_dim,)),
            nets.MLP(tuple(m.top_hidden)[::-1] + (2 * m.latent_dim,)))


def _decoder_shape(config, image_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The decoder's output per example: the image, or for the discretised Gaussian a mean and a
    log scale per pixel, stacked on the channel axis ([H, W, 2C])."""
    if config.model.likelihood == 'discretized_gaussian':
        return (*image_shape[:-1], 2 * image_shape[-1])
    return tuple(image_shape)


def encode(config, params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """q(z | x) = N(mean, exp(log_var)): [B, H, W, C] -> ([B, D], [B, D])."""
    encoder, _ = _networks(config, x.shape[1:])
    inp = x.reshape(x.shape[0], -1) if config.model.architecture == 'mlp' else x
    h = encoder.apply({'params': params['encoder']}, inp)
    mean, log_var = jnp.split(h, 2, axis=-1)
    return mean, log_var


def decode(config, params, z: jax.Array) -> jax.Array:
    """Decoder output (Bernoulli logits or Gaussian mean), [N, D_z] -> [N, H, W, C]; for the
    discretised Gaussian, means and log scales [N, H, W, 2C]."""
    shape = params['log_scale'].shape
    _, decoder = _networks(config, shape)
    out = decoder.apply({'params': params['decoder']}, z)
    return out.reshape((z.shape[0],) + _decoder_shape(config, shape))


def log_px_given_z(config, params, x: jax.Array, out: jax.Array) -> jax.Array:
    """log p(x | z) summed over pixels: x [N, H, W, C], decoder output [N, H, W, C] -> [N]."""
    axes = tuple(range(1, x.ndim))
    if config.model.likelihood == 'bernoulli':
        xb = data_lib.to_unit(config.data, x)
        # log Bernoulli(x; sigmoid(l)) = x log sigmoid(l) + (1 - x) log sigmoid(-l)
        #                              = x l - softplus(l),
        # with softplus(l) = max(l, 0) + log1p(exp(-|l|)) written out: XLA:CPU's fusions of
        # jax.nn.log_sigmoid take several times as long for the value and gradient, a noticeable
        # share of the MLP VAE's step at large batch (measured: docs/benchmarks.md).
        out = out.astype(jnp.float32)  # bfloat16 logits (train.compute_dtype): the loss in float32
        softplus = jnp.maximum(out, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(out)))
        return jnp.sum(xb * out - softplus, axes)
    if config.model.likelihood == 'discretized_gaussian':
        out = out.astype(jnp.float32)
        mean, log_scale = jnp.split(out, 2, axis=-1)
        log_scale = jnp.maximum(log_scale, MIN_LOG_SCALE + math.log(_value_span(config)))
        low, high = data_lib.value_range(config.data)
        half_bin = (high - low) / (2 * data_lib.dataset_info(config.data).max_value)
        ll = diffusion.discretized_gaussian_log_likelihood(x, mean, jnp.exp(2.0 * log_scale),
                                                           half_bin, low, high)
        return jnp.sum(ll, axes)
    log_scale = params['log_scale']
    z = (x - out) * jnp.exp(-log_scale)
    return jnp.sum(-0.5 * z * z - log_scale - 0.5 * LOG_2PI, axes)


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mean, exp(log_var)) || N(0, I)) summed over the last axis (K&W Appendix B)."""
    return 0.5 * jnp.sum(mean * mean + jnp.exp(log_var) - 1.0 - log_var, axis=-1)


def log_normal(z: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    return jnp.sum(-0.5 * ((z - mean) ** 2 * jnp.exp(-log_var) + log_var + LOG_2PI), axis=-1)


def top_gaussian(config, params, net: str, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """q(z2 | z1) (net 'top_encoder') or p(z1 | z2) ('top_decoder'): z [..., D] -> (mean,
    log variance)."""
    module = _top_networks(config)[net == 'top_decoder']
    return jnp.split(module.apply({'params': params[net]}, z), 2, axis=-1)


def prior_components(config, params) -> tuple[jax.Array, jax.Array]:
    """The mixture prior's equally weighted Gaussians: (means [K, D], log variances [K, D]);
    for VampPrior, the encoder's posteriors of the pseudo-inputs (with two layers, q(z2 | z1)
    at the mean of their q(z1 | u))."""
    if config.model.prior == 'vamp':
        mean, log_var = encode(config, params, params['prior']['pseudo_inputs'])
        if config.model.top_latent_dim:
            return top_gaussian(config, params, 'top_encoder', mean)
        return mean, log_var
    return params['prior']['means'], params['prior']['log_vars']


def log_latents(config, params, z: jax.Array, rng: jax.Array, index: jax.Array) -> jax.Array:
    """For z1 ~ q(z1 | x), [B, k, D]: log p(z1) with one layer; with two, log p(z1, z2) -
    log q(z2 | z1) for one z2 ~ q(z2 | z1) each, drawn from (rng, example index). -> [B, k]."""
    if not config.model.top_latent_dim:
        return log_prior(config, params, z)
    mean2, log_var2 = top_gaussian(config, params, 'top_encoder', z)
    eps = noise.normal(rng, index, z.shape[1:-1] + (config.model.top_latent_dim,))
    z2 = mean2 + jnp.exp(0.5 * log_var2) * eps
    mean1, log_var1 = top_gaussian(config, params, 'top_decoder', z2)
    return (log_prior(config, params, z2) + log_normal(z, mean1, log_var1)
            - log_normal(z2, mean2, log_var2))


def log_prior(config, params, z: jax.Array) -> jax.Array:
    """log p(z) of the top stochastic layer, z [..., D] -> [...]."""
    if config.model.prior == 'standard':
        return jnp.sum(-0.5 * (z * z + LOG_2PI), axis=-1)
    means, log_vars = prior_components(config, params)
    log_k = log_normal(z[..., None, :], means, log_vars)                      # [..., K]
    return jax.nn.logsumexp(log_k, axis=-1) - math.log(means.shape[0])


def sample_prior(config, params, rng: jax.Array, num: int) -> jax.Array:
    """z ~ p(z), the decoder's input: [num, D]; from a mixture, a component drawn uniformly, then
    its Gaussian; with two layers, z2 so drawn, then z1 ~ p(z1 | z2)."""
    m = config.model
    eps = jax.random.normal(rng, (num, _prior_dim(m)))
    if m.prior == 'standard':
        z = eps
    else:
        means, log_vars = prior_components(config, params)
        k = jax.random.randint(jax.random.fold_in(rng, 1), (num,), 0, means.shape[0])
        z = means[k] + jnp.exp(0.5 * log_vars[k]) * eps
    if not m.top_latent_dim:
        return z
    mean1, log_var1 = top_gaussian(config, params, 'top_decoder', z)
    return mean1 + jnp.exp(0.5 * log_var1) * jax.random.normal(jax.random.fold_in(rng, 2),
                                                                 mean1.shape)


# ------------------------------------------------------------------------------------------------
# Objectives: each returns the per-example loss [B] (to be averaged) and per-example diagnostics.

def log_p_drawn(config, params, z: jax.Array, rng: jax.Array, index: jax.Array) -> jax.Array:
    """log p(z) [B] (with two layers, log p(z1, z2) - log q(z2 | z1)) at one z [B, D] each, z2
    drawn from (fold_in(rng, 1), index): the objectives' draw."""
    return log_latents(config, params, z[:, None], jax.random.fold_in(rng, 1), index)[:, 0]


def latent_kl(config, mean: jax.Array, log_var: jax.Array, z: jax.Array, log_p: jax.Array
              ) -> jax.Array:
    """KL(q(z | x) || p(z)) [B] for one z [B, D] ~ q(z | x) = N(mean, exp(log_var)) each, with
    log_p its `log_p_drawn`: in closed form against N(0, I) (log_p unused, so compiled away);
    against a mixture prior or with two layers, log q - log p at the z drawn (an unbiased
    one-sample estimate)."""
    if config.model.prior == 'standard' and not config.model.top_latent_dim:
        return gaussian_kl(mean, log_var)
    return log_normal(z, mean, log_var) - log_p


@chex.dataclass
class Terms:
    loss: chex.Array   # [B] what the optimiser minimises
    elbo: chex.Array   # [B] nats
    recon: chex.Array  # [B] E_q log p(x | z), nats
    kl: chex.Array     # [B] KL(q || p), nats


def elbo_objective(config, params, batch: Batch, rng: jax.Array, step: jax.Array) -> Terms:
    x = batch['image']
    mean, log_var = encode(config, params, x)
    eps = noise.normal(rng, batch['index'], (1, mean.shape[-1]))[:, 0]
    z = mean + jnp.exp(0.5 * log_var) * eps  # reparameterisation (K&W Sec. 2.4)
    # 1. RECONSTRUCTION
    recon = log_px_given_z(config, params, x, decode(config, params, z))
    # 2. LATENT
    kl = latent_kl(config, mean, log_var, z, log_p_drawn(config, params, z, rng, batch['index']))
    beta = config.loss.beta
    if config.loss.kl_warmup_steps > 0:
        beta = beta * jnp.minimum(1.0, step.astype(jnp.float32) / config.loss.kl_warmup_steps)
    return Terms(loss=-(recon - beta * kl), elbo=recon - kl, recon=recon, kl=kl)


def iwae_log_weights(config, params, x: jax.Array, index: jax.Array, rng: jax.Array, k: int
                     ) -> jax.Array:
    """log w_i = log p(x, z_i) - log q(z_i | x), z_i ~ q(z | x): -> [B, k]."""
    mean, log_var = encode(config, params, x)
    b, d = mean.shape
    eps = noise.normal(rng, index, (k, d))                                  # [B, k, D]
    z = mean[:, None] + jnp.exp(0.5 * log_var)[:, None] * eps               # [B, k, D]
    out = decode(config, params, z.reshape(b * k, d))                        # [B*k, H, W, C]
    x_rep = jnp.repeat(x, k, axis=0)
    log_px = log_px_given_z(config, params, x_rep, out).reshape(b, k)
    log_pz = log_latents(config, params, z, jax.random.fold_in(rng, 1), index)
    log_qz = log_normal(z, mean[:, None], log_var[:, None])
    return log_px + log_pz - log_qz


def iwae_objective(config, params, batch: Batch, rng: jax.Array, step: jax.Array) -> Terms:
    k = config.loss.num_samples
    log_w = iwae_log_weights(config, params, batch['image'], batch['index'], rng, k)
    bound = jax.nn.logsumexp(log_w, axis=-1) - math.log(k)  # Burda et al. Eq. 8
    elbo = jnp.mean(log_w, axis=-1)
    nan = jnp.full_like(bound, jnp.nan)  # recon/kl are not separately estimated by this objective
    return Terms(loss=-bound, elbo=elbo, recon=nan, kl=nan)


OBJECTIVES: dict[str, Callable[..., Terms]] = {
    'elbo': elbo_objective,
    'iwae': iwae_objective,
}


# ------------------------------------------------------------------------------------------------
# The family contract

def init(config, rng: jax.Array, example_batch: Batch) -> dict[str, PyTree]:
    x = jnp.asarray(example_batch['image'][:1])
    shape = tuple(x.shape[1:])
    encoder, decoder = _networks(config, shape)
    k_enc, k_dec = jax.random.split(rng)
    inp = x.reshape(1, -1) if config.model.architecture == 'mlp' else x
    params = {
        'encoder': encoder.init(k_enc, inp)['params'],
        'decoder': decoder.init(k_dec, jnp.zeros((1, config.model.latent_dim)))['params'],
        # Per-pixel log standard deviation of the Gaussian likelihood; its shape also records the
        # image shape (unused, but kept, for the Bernoulli likelihood).
        'log_scale': jnp.full(shape, math.log(0.1), jnp.float32),
    }
    if config.model.top_latent_dim:
        top_enc, top_dec = _top_networks(config)
        k_top_enc, k_top_dec = jax.random.split(jax.random.fold_in(rng, 3))
        params['top_encoder'] = top_enc.init(
            k_top_enc, jnp.zeros((1, config.model.latent_dim)))['params']
        params['top_decoder'] = top_dec.init(
            k_top_dec, jnp.zeros((1, config.model.top_latent_dim)))['params']
    params |= _init_prior(config, jax.random.fold_in(rng, 2), shape)
    return train_state.create(config, params)


def _init_prior(config, rng: jax.Array, image_shape: tuple[int, ...]) -> dict[str, PyTree]:
    """A mixture prior's parameters: pseudo-inputs near the middle of the data's value range
    (VampPrior; their posteriors start near the encoder's output at a grey image), or latent
    means from N(0, I) with unit variances (MoG)."""
    m = config.model
    if m.prior == 'vamp':
        low, high = data_lib.value_range(config.data)
        u = (low + high) / 2 + 0.01 * (high - low) * jax.random.normal(
            rng, (m.prior_components, *image_shape))
        return {'prior': {'pseudo_inputs': u}}
    if m.prior == 'mog':
        d = _prior_dim(m)
        return {'prior': {'means': jax.random.normal(rng, (m.prior_components, d)),
                          'log_vars': jnp.zeros((m.prior_components, d))}}
    return {}


def train_step(config, state, batch: Batch, rng: jax.Array):
    objective = config_lib.objective(OBJECTIVES, config.objective)

    def loss_fn(params, batch):
        terms = objective(config, params, batch, rng, state['step'])
        means = {'elbo_nats': jnp.mean(terms.elbo)}
        if config.objective == 'elbo':
            means |= {'recon_nats': jnp.mean(terms.recon), 'kl_nats': jnp.mean(terms.kl)}
        return jnp.mean(terms.loss), (means, {}, None)

    (loss, (means, _, _)), grads = train_state.value_and_grad(config, loss_fn, state['params'],
                                                             batch)
    new_state, grad_norm = train_state.apply_gradients(config, state, grads)
    return new_state, {'loss': loss, **means, 'grad_norm': grad_norm}


def log_likelihood(config, params, batch: Batch, rng: jax.Array, k: int | None = None,
                   chunk: int = 100) -> jax.Array:
    """IWAE-k lower bound on log p(x) per example [B], in nats; k importance samples in chunks."""
    k = config.eval.iwae_k if k is None else k
    chunk = min(chunk, k)
    num_chunks = -(-k // chunk)
    x, index = batch['image'], batch['index']

    def body(carry, c):
        # Each chunk draws fresh noise keyed by (chunk, example): a k-sample bound that is the
        # same whatever the chunk size would need a different key layout; chunking is fixed here.
        log_w = iwae_log_weights(config, params, x, index, jax.random.fold_in(rng, c), chunk)
        valid = (c * chunk + jnp.arange(chunk)) < k
        log_w = jnp.where(valid, log_w, -jnp.inf)
        return jnp.logaddexp(carry, jax.nn.logsumexp(log_w, axis=-1)), None

    init_acc = jnp.full((x.shape[0],), -jnp.inf)
    acc, _ = jax.lax.scan(body, init_acc, jnp.arange(num_chunks))
    return acc - math.log(k)


def elbo(config, params, batch: Batch, rng: jax.Array) -> Terms:
    return elbo_objective(config, params, batch, rng, jnp.asarray(config.loss.kl_warmup_steps))


def sample(config, params, rng: jax.Array, num: int, labels=None) -> jax.Array:
    """Decoder means of z ~ p(z), in the data's value range: [num, H, W, C]."""
    return mean_image(config, decode(config, params, sample_prior(config, params, rng, num)))


def _value_span(config) -> float:
    low, high = data_lib.value_range(config.data)
    return high - low


def mean_image(config, out: jax.Array) -> jax.Array:
    if config.model.likelihood == 'bernoulli':
        return data_lib.from_unit(config.data, jax.nn.sigmoid(out))
    if config.model.likelihood == 'discretized_gaussian':
        out = jnp.split(out, 2, axis=-1)[0]
    return jnp.clip(out, *data_lib.value_range(config.data))


def reconstruct(config, params, x: jax.Array) -> jax.Array:
    mean, _ = encode(config, params, x)
    return mean_image(config, decode(config, params, mean))


def evaluate(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> dict[str, float]:
    """Test ELBO and IWAE-k bound, in nats per example and bits per dimension."""
    k = config.eval.iwae_k
    k_elbo, k_iwae = jax.random.split(rng)

    @jax.jit
    def per_example(params, batch):
        terms = elbo(config, params, batch, k_elbo)
        return {'elbo': terms.elbo, 'recon': terms.recon, 'kl': terms.kl,
                'iwae': log_likelihood(config, params, batch, k_iwae, k)}

    totals = data_lib.map_batches(lambda b: per_example(params, b), data, config.eval.batch_size)
    mean = {key: float(np.mean(v)) for key, v in totals.items()}
    prep = data_lib.preprocessing(config.data)
    if config.model.likelihood == 'discretized_gaussian':  # P(x) of the integer pixels themselves
        prep = data_lib.Preprocessing('discrete', num_levels=data_lib.dataset_info(
            config.data).max_value + 1, low=prep.low, high=prep.high)
    dims = int(np.prod(data['image'].shape[1:]))
    neg_elbo = metrics.likelihood_record(-mean['elbo'], dims, prep, prefix='neg_elbo')
    return {
        **metrics.likelihood_record(-mean['iwae'], dims, prep, prefix='nll'),
        'elbo_nats': -neg_elbo['neg_elbo_nats'],
        'neg_elbo_bits_per_dim': neg_elbo['neg_elbo_bits_per_dim'],
        'recon_nats': mean['recon'],
        'kl_nats': mean['kl'],
        'iwae_k': k,
    }


def figures(config, params, data: dict[str, np.ndarray], rng: jax.Array, out_dir: str) -> list[str]:
    x = jnp.asarray(data['image'][:16])
    samples = np.asarray(sample(config, params, rng, 64))
    recons = np.asarray(reconstruct(config, params, x))
    mean, _ = encode(config, params, x[:2])
    lo, hi = data_lib.value_range(config.data)
    rows = []
    for path in (viz.lerp, viz.slerp):
        z = path(mean[0], mean[1], 10)
        rows.append(np.asarray(mean_image(config, decode(config, params, z))))
    return [
        viz.save_grid(samples, f'{out_dir}/samples.png', 'VAE samples (decoder means)', lo, hi),
        viz.save_rows([np.asarray(x), recons], f'{out_dir}/reconstructions.png',
                      ['data', 'reconstruction'], lo, hi),
        viz.save_rows(rows, f'{out_dir}/interpolation.png', ['linear', 'spherical'], lo, hi),
    ]
