"""EDM (Karras et al. 2022): a diffusion model in EDM's parametrisation, trained with its
log-normal noise levels and loss weight and sampled by its Euler and Heun samplers over the Karras
levels, with optional churn. The maths is in genmodels/nn/edm.py; this module is the family
contract around it.

The raw network F is the DDPM family's (the U-Net for images, the MLP denoiser for toy points).
It sees the noise level through their timestep embedding as EDM's c_noise = ln(sigma) / 4, mapped
affinely onto the embedding's range: t = 1000 (ln sigma - ln sigma_min) / (ln sigma_max -
ln sigma_min), so sigma_min is t = 0 and sigma_max t = 1000 (the score family's map).

The loss is the mean over dimensions of lambda(sigma) (D(x_0 + sigma n; sigma) - x_0)^2, ln sigma
~ N(loss.p_mean, loss.p_std^2) per example. Sampling starts from N(0, sigma_max^2 I). Each
eval.samplers entry (`heun18`: Heun over 18 levels, 35 evaluations; `euler35`) gets its sample
metrics, its time per image and its NFE. eval.json also has the test loss (the training objective
on the test split, noise keyed by the example) and, with eval.ode_likelihood_solver, the
probability-flow likelihood from sigma_min to sigma_max (Song et al. 2021; images dequantised, the
divergence Hutchinson's: genmodels/metrics/ode_likelihood.py).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmodels import config as config_lib, data as data_lib, viz
from genmodels.config import ConfigError
from genmodels.metrics import modes as modes_lib, ode_likelihood, sample_quality
from genmodels.nn import edm, noise, ode, unet
from genmodels.training import train_state

PyTree = Any
Batch = dict[str, jax.Array]

CONFIG_SCHEMA = {
    'model': {
        **unet.MODEL_SCHEMA,            # the U-Net's and the MLP denoiser's keys
        'sigma_data': float,            # the data's standard deviation (0.5 for images in [-1, 1])
        'sigma_min': float,             # the lowest level sampled (0.002) and the likelihood's start
        'sigma_max': float,             # the highest (80): sampling starts from N(0, sigma_max^2 I)
    },
    'loss': {
        'p_mean': float,                # ln sigma ~ N(p_mean, p_std^2) in training (-1.2, 1.2)
        'p_std': float,
    },
    'sampler': {
        'name': str,                    # 'heun' or 'euler': what `sample` (figures) uses
        'num_steps': int,               # N levels (Heun: 2N - 1 evaluations)
        'rho': float,                   # the Karras schedule's exponent (7)
        'churn': float,                 # S_churn (0: the deterministic sampler)
        's_tmin': float,                # churn only for levels in [s_tmin, s_tmax]
        's_tmax': float,
        's_noise': float,               # the churn noise's scale (1.0: exact)
    },
    'eval': {                           # added to the shared eval section
        'samplers': tuple,              # e.g. ('heun18', 'euler35'): sample metrics of each
        'ode_likelihood_solver': str,   # the probability-flow likelihood's solver, e.g. rk425
    },
}
# train.remat='blocks' recomputes these in the backward pass (model.architecture='unet' only).
REMAT_BLOCKS = ('U-Net residual blocks', 'U-Net attention blocks')
RESUMABLE_KEYS = tuple(f'sampler.{k}' for k in CONFIG_SCHEMA['sampler']) + (
    'eval.samplers', 'eval.ode_likelihood_solver')
MAX_CONDITION = 1000.0  # the embedding's t at sigma_max


def check_config(config: ml_collections.ConfigDict) -> None:
    m, s, toy = config.model, config.sampler, data_lib.is_toy(config.data.name)
    if m.architecture not in ('unet', 'mlp'):
        raise ConfigError(f"model.architecture must be 'unet' or 'mlp', got {m.architecture!r}.")
    if toy and m.architecture != 'mlp':
        raise ConfigError("toy data are points, not images: use model.architecture='mlp'.")
    if not 0.0 < m.sigma_min < m.sigma_max or m.sigma_data <= 0:
        raise ConfigError(f'EDM needs 0 < model.sigma_min < model.sigma_max and model.sigma_data '
                          f'> 0, got {m.sigma_min}, {m.sigma_max} and {m.sigma_data}.')
    if config.loss.p_std <= 0:
        raise ConfigError(f'loss.p_std must be positive, got {config.loss.p_std}.')
    config_lib.check_choice(config, 'sampler.name', edm.SAMPLERS)
    if s.num_steps < 1 or s.rho <= 0 or s.churn < 0 or s.s_noise < 0 or s.s_tmin > s.s_tmax:
        raise ConfigError('the sampler needs num_steps >= 1, rho > 0, churn >= 0, s_noise >= 0 '
                          'and s_tmin <= s_tmax.')
    for name in config.eval.samplers:
        try:
            edm.parse_sampler(name)
        except ValueError as e:
            raise ConfigError(f'eval.samplers: {e}') from None
    if config.eval.ode_likelihood_solver:
        try:
            ode.parse(config.eval.ode_likelihood_solver)
        except ValueError as e:
            raise ConfigError(f'eval.ode_likelihood_solver: {e}') from None
    if not toy:
        if config.data.dequantize or config.data.binarize:
            raise ConfigError('EDM trains on the pixel levels as they are (the likelihood '
                              'dequantises them itself): set data.dequantize=False and '
                              'data.binarize=False.')
        if config.data.scale != '-11':
            raise ConfigError("EDM's sigma_data = 0.5 is for data in [-1, 1]: set "
                              "data.scale='-11'.")


# ------------------------------------------------------------------------------------------------
# The network and the denoiser

def network(config):
    m = config.model
    if m.architecture == 'mlp':
        return unet.MLPDenoiser(tuple(m.hidden), m.embed_dim)
    return unet.UNet(m.channels, tuple(m.channel_mults), m.num_res_blocks,
                     tuple(m.attention_resolutions), m.dropout, num_heads=m.num_heads,
                     remat=config.train.remat == 'blocks')


def condition(config, sigma: jax.Array) -> jax.Array:
    """The embedding's t: c_noise = ln(sigma) / 4 mapped so that sigma_min -> 0, sigma_max ->
    1000."""
    m = config.model
    c_min, c_max = math.log(m.sigma_min) / 4.0, math.log(m.sigma_max) / 4.0
    c_noise = edm.preconditioning(sigma, m.sigma_data).c_noise
    return MAX_CONDITION * (c_noise - c_min) / (c_max - c_min)


def make_denoiser(config, params, *, train: bool = False,
                  dropout_rng: jax.Array | None = None) -> edm.Denoiser:
    """D(x [B, ...], sigma [] or [B]) = c_skip x + c_out F(c_in x; c_noise)."""
    net = network(config)
    rngs = {'dropout': dropout_rng} if train else {}

    def denoise(x, sigma):
        sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1])
        c = edm.preconditioning(sigma.reshape((-1,) + (1,) * (x.ndim - 1)),
                                config.model.sigma_data)
        f = net.apply({'params': params}, c.c_in * x, condition(config, sigma), None,
                      train=train, rngs=rngs)
        return c.c_skip * x + c.c_out * f

    return denoise


def edm_loss(config, denoise: edm.Denoiser, batch: Batch, rng: jax.Array):
    """(loss [B], ln sigma [B]): lambda(sigma) times the mean over dimensions of (D(x_0 + sigma n;
    sigma) - x_0)^2, with ln sigma ~ N(p_mean, p_std^2) and n ~ N(0, I) keyed by the example."""
    x0, index = batch['image'], batch['index']
    k_sigma, k_n = jax.random.split(rng)
    log_sigma = config.loss.p_mean + config.loss.p_std * noise.normal(k_sigma, index, ())
    sigma = jnp.exp(log_sigma)
    n = noise.normal(k_n, index, x0.shape[1:])
    s = sigma.reshape((-1,) + (1,) * (x0.ndim - 1))
    error = jnp.mean((denoise(x0 + s * n, sigma) - x0) ** 2, axis=tuple(range(1, x0.ndim)))
    return edm.loss_weight(sigma, config.model.sigma_data) * error, log_sigma


def edm_objective(config, params, batch: Batch, rng: jax.Array, dropout_rng: jax.Array):
    return edm_loss(config, make_denoiser(config, params, train=True, dropout_rng=dropout_rng),
                    batch, rng)


OBJECTIVES = {'edm': edm_objective}


# ------------------------------------------------------------------------------------------------
# The family contract

def init(config, rng: jax.Array, example_batch: Batch) -> dict[str, PyTree]:
    x = jnp.asarray(example_batch['image'][:1])
    params = network(config).init(rng, x, jnp.zeros((1,), jnp.float32))['params']
    return train_state.create(config, params)


def train_step(config, state, batch: Batch, rng: jax.Array):
    """One step of the objective, logging the loss by quarter of the training levels (q0: the
    lowest sigmas, by the log-normal's quartiles)."""
    objective = config_lib.objective(OBJECTIVES, config.objective)
    p_mean, p_std = config.loss.p_mean, config.loss.p_std

    def quarter(log_sigma):
        u = jax.scipy.stats.norm.cdf((log_sigma - p_mean) / p_std)
        return jnp.clip(jnp.floor(4.0 * u), 0, 3).astype(jnp.int32)

    return train_state.step_by_noise_level(config, state, batch, rng, objective, quarter)


def sample(config, params, rng: jax.Array, num: int, labels=None, *, name: str | None = None,
           keep: int = 0):
    """x [num, H, W, C] by the sampler `name` (e.g. 'heun18'; default sampler.name over
    sampler.num_steps levels) from N(0, sigma_max^2 I), clipped to the data's value range (images);
    the model is unconditional, so `labels` is unused. With keep > 0 returns (x, the chain after
    `keep` evenly spaced steps [keep, num, ...])."""
    del labels
    m, s = config.model, config.sampler
    kind = (edm.SAMPLERS[s.name], s.num_steps) if name is None else edm.parse_sampler(name)
    levels = edm.karras_sigmas(kind[1], m.sigma_min, m.sigma_max, s.rho)
    k_x, k_chain = jax.random.split(rng)
    shape = (num,) + tuple(data_lib.dataset_info(config.data).shape)
    x = m.sigma_max * jax.random.normal(k_x, shape)
    out = edm.sample(make_denoiser(config, params), x, levels, k_chain, second_order=kind[0],
                     churn=s.churn, s_tmin=s.s_tmin, s_tmax=s.s_tmax, s_noise=s.s_noise,
                     keep=keep)
    bounds = data_lib.value_range(config.data)
    if bounds is None:
        return out
    return (jnp.clip(out[0], *bounds), out[1]) if keep else jnp.clip(out, *bounds)


def with_sampler(config, name: str) -> ml_collections.ConfigDict:
    """`config` sampling with the eval.samplers entry `name` ('heun18')."""
    second_order, steps = edm.parse_sampler(name)
    variant = copy.deepcopy(config)
    variant.sampler.name = 'heun' if second_order else 'euler'
    variant.sampler.num_steps = steps
    return variant


def ode_log_likelihood(config, params, batch: Batch, rng: jax.Array) -> jax.Array:
    """log p(y) [B] in nats through the probability-flow ODE from sigma_min to sigma_max, where the
    base is N(0, sigma_max^2 I)."""
    m = config.model
    return ode_likelihood.log_likelihood(
        config, edm.probability_flow(make_denoiser(config, params)), batch, rng,
        math.log(m.sigma_min), math.log(m.sigma_max), base_std=m.sigma_max)


def evaluate(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> dict[str, float]:
    """The test loss; with eval.ode_likelihood_solver the probability-flow NLL; toy data: the true
    NLL and mode coverage of eval.num_samples samples; images: each eval.samplers entry's sample
    metrics, time per image and NFE."""
    k_loss, k_ll, k_sample = jax.random.split(rng, 3)
    fn = jax.jit(lambda b: {'loss': edm_loss(config, make_denoiser(config, params), b,
                                              k_loss)[0]})
    out = {'test_loss': float(np.mean(data_lib.map_batches(fn, data,
                                                            config.eval.batch_size)['loss']))}
    if config.eval.ode_likelihood_solver:
        out |= ode_likelihood.evaluate(config, data, k_ll,
                                       lambda b, r: ode_log_likelihood(config, params, b, r))
    if data_lib.is_toy(config.data.name):
        return out | _toy_metrics(config, params, k_sample)
    for name in config.eval.samplers:
        out[f'nfe_{name}'] = edm.num_evaluations(*edm.parse_sampler(name))
    return out | sample_quality.per_sampler(
        config, config.eval.samplers,
        lambda name: lambda key: sample(config, params, key, config.eval.batch_size, name=name),
        k_sample)


def _toy_metrics(config, params, rng: jax.Array) -> dict[str, float]:
    num = config.eval.num_samples
    points = np.asarray(jax.jit(lambda key: sample(config, params, key, num))(rng)).reshape(num, -1)
    return modes_lib.of_toy_samples(points, data_lib.toy_distribution(config.data.name),
                                    true_nll=True)


STRIP_POINTS = 10  # columns of the sampling strip: the chain at 9 evenly spaced steps, then x


def figures(config, params, data: dict[str, np.ndarray], rng: jax.Array, out_dir: str) -> list[str]:
    """Samples (viz.save_samples); images: also the sampling strip, one row per sample from
    sigma_max (left) to the sample (right)."""
    s = config.sampler
    num = viz.num_samples(config.data)
    samples = jax.jit(lambda key: sample(config, params, key, num))(rng)
    paths = viz.save_samples(config.data, samples, f'{out_dir}/samples.png',
                             f'EDM samples ({s.name}, {s.num_steps} levels)',
                             reference=data['image'])
    if data_lib.is_toy(config.data.name):
        return paths
    lo, hi = data_lib.value_range(config.data)
    x, trace = jax.jit(lambda key: sample(config, params, key, 8, keep=STRIP_POINTS - 1))(
        jax.random.fold_in(rng, 1))
    strip = np.concatenate([np.asarray(trace), np.asarray(x)[None]])     # [points, 8, H, W, C]
    rows = [np.clip(strip[:, i], lo, hi) for i in range(strip.shape[1])]
    paths.append(viz.save_rows(rows, f'{out_dir}/sampling.png',
                               [f'sigma {config.model.sigma_max:g} -> 0'] * len(rows), lo, hi))
    return paths
