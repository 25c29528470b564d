"""Flow matching (Lipman et al. 2023; Liu et al. 2023, rectified flow): a velocity field v(x, t)
regressed onto the velocity of a probability path from noise (t = 0) to data (t = 1), sampled and
scored by integrating the ODE dx/dt = v(x, t) (genmodels/nn/ode.py).

With x0 ~ N(0, I), x1 a data point and t drawn per example, the conditional path and its velocity:

    linear  (CondOT, rectified flow)  x_t = (1 - t) x0 + t x1,                u = x1 - x0
    cosine  (variance preserving)     x_t = cos(pi t / 2) x0 + sin(pi t / 2) x1,
                                      u = pi / 2 (cos(pi t / 2) x1 - sin(pi t / 2) x0)

and the loss || v(x_t, t) - u ||^2, summed over dimensions and averaged over examples: its
minimiser is the marginal velocity E[u | x_t], whose ODE carries N(0, I) to the data's
distribution (Lipman et al. 2023, Thm 2). The times are uniform on [0, 1] or logit-normal
(t = sigmoid(m + s n), n ~ N(0, 1); Esser et al. 2024), which weighs the middle of the path.

Sampling integrates from t = 0 to 1 with `sampler.name`: a fixed-step method (`euler50`,
`heun20`, `midpoint25`, `rk410`) or adaptive `dopri5` (`sampler.rtol`, `sampler.atol`); eval.json
records the sampler's NFE. The likelihood is exact through the instantaneous change of variables
(Chen et al. 2018), integrated from the data back to the noise with `eval.likelihood_solver`: the
exact divergence for toy points, Hutchinson's estimate for images (`eval.hutchinson`), whose
standard error over the test examples is reported beside the mean. Dequantised pixels give
bits/dim of the 8-bit data (genmodels/metrics/units.py).

The network is the DDPM family's: the U-Net for images, the MLP denoiser for toy points, told t
through their timestep embedding as 1000 t.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmodels import config as config_lib, data as data_lib, metrics, viz
from genmodels.config import ConfigError
from genmodels.metrics import modes as modes_lib, units
from genmodels.nn import noise, ode, unet
from genmodels.training import train_state

PyTree = Any
Batch = dict[str, jax.Array]
Field = Callable[[jax.Array, jax.Array], jax.Array]

PATHS = ('linear', 'cosine')
TIME_DISTRIBUTIONS = ('uniform', 'logit_normal')
TIME_SCALE = 1000.0  # the network's timestep embedding sees 1000 t, the range it was made for

CONFIG_SCHEMA = {
    'model': {
        **unet.MODEL_SCHEMA,
        'path': str,                # 'linear' or 'cosine'
        'time_distribution': str,   # 'uniform' or 'logit_normal'
        'logit_mean': float,        # logit-normal times: t = sigmoid(logit_mean + logit_std n)
        'logit_std': float,
    },
    'sampler': {
        'name': str,                # euler50, heun20, midpoint25, rk410 or dopri5
        'rtol': float,              # dopri5's tolerances
        'atol': float,
    },
    'eval': {
        'likelihood_solver': str,   # the ODE solver of the likelihood, named as sampler.name
        'hutchinson': bool,         # Hutchinson's divergence estimate (else exact: low dims)
    },
}
RESUMABLE_KEYS = tuple(f'sampler.{k}' for k in CONFIG_SCHEMA['sampler']) + (
    'eval.likelihood_solver', 'eval.hutchinson')


def check_config(config: ml_collections.ConfigDict) -> None:
    m = config.model
    if m.architecture not in ('unet', 'mlp'):
        raise ConfigError(f"model.architecture must be 'unet' or 'mlp', got {m.architecture!r}.")
    if data_lib.is_toy(config.data.name) and m.architecture != 'mlp':
        raise ConfigError("toy data are points, not images: use model.architecture='mlp'.")
    config_lib.check_choice(config, 'model.path', PATHS)
    config_lib.check_choice(config, 'model.time_distribution', TIME_DISTRIBUTIONS)
    if m.logit_std <= 0:
        raise ConfigError(f'model.logit_std must be positive, got {m.logit_std}.')
    for key in ('sampler.name', 'eval.likelihood_solver'):
        section, name = key.split('.')
        try:
            solver(config[section][name])
        except ValueError as e:
            raise ConfigError(f'{key}: {e}') from None
    if not (config.sampler.rtol > 0 and config.sampler.atol > 0):
        raise ConfigError('sampler.rtol and sampler.atol must be positive.')


def solver(name: str) -> tuple[str, int]:
    """('dopri5', 0) or a fixed-step (method, steps) from a sampler name."""
    return ('dopri5', 0) if name == 'dopri5' else ode.parse(name)


# ------------------------------------------------------------------------------------------------
# Paths, times and the network

def path(config, x0: jax.Array, x1: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x_t, u_t) of the conditional path at times t [B] between noise x0 and data x1."""
    t = t.reshape((-1,) + (1,) * (x1.ndim - 1))
    if config.model.path == 'linear':
        return (1.0 - t) * x0 + t * x1, x1 - x0
    a = 0.5 * math.pi * t
    return (jnp.cos(a) * x0 + jnp.sin(a) * x1,
            0.5 * math.pi * (jnp.cos(a) * x1 - jnp.sin(a) * x0))


def sample_times(config, rng: jax.Array, index: jax.Array) -> jax.Array:
    """t [B] per example, keyed by its index."""
    m = config.model
    if m.time_distribution == 'uniform':
        return noise.uniform(rng, index, ())
    return jax.nn.sigmoid(m.logit_mean + m.logit_std * noise.normal(rng, index, ()))


def network(config):
    m = config.model
    if m.architecture == 'mlp':
        return unet.MLPDenoiser(tuple(m.hidden), m.embed_dim)
    return unet.UNet(m.channels, tuple(m.channel_mults), m.num_res_blocks,
                     tuple(m.attention_resolutions), m.dropout, num_heads=m.num_heads)


def make_velocity(config, params, *, train: bool = False,
                  dropout_rng: jax.Array | None = None) -> Field:
    """v(x [B, ...], t [] or [B]) -> [B, ...]."""
    net = network(config)
    rngs = {'dropout': dropout_rng} if train else {}

    def velocity(x, t):
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        return net.apply({'params': params}, x, TIME_SCALE * t, None, train=train, rngs=rngs)

    return velocity


# ------------------------------------------------------------------------------------------------
# Objectives: (config, params, batch, rng, dropout_rng) -> (loss [B], quarter of the path [B])

def cfm_objective(config, params, batch: Batch, rng: jax.Array, dropout_rng: jax.Array):
    """Conditional flow matching with the independent coupling (Lipman et al. 2023, Eq. 9)."""
    velocity = make_velocity(config, params, train=True, dropout_rng=dropout_rng)
    return cfm_loss(config, velocity, batch, rng)


def cfm_loss(config, velocity: Field, batch: Batch, rng: jax.Array):
    """(|| v(x_t, t) - u ||^2 [B], quarter of the path [B]) with x0 and t keyed by the index."""
    x1, index = batch['image'], batch['index']
    k_t, k_x0 = jax.random.split(rng)
    t = sample_times(config, k_t, index)
    x0 = noise.normal(k_x0, index, x1.shape[1:])
    xt, u = path(config, x0, x1, t)
    loss = jnp.sum((velocity(xt, t) - u) ** 2, axis=tuple(range(1, x1.ndim)))
    # q0 is the quarter nearest the data (t near 1), as the DDPM's q0 is the least noise.
    return loss, 3 - jnp.minimum((4 * t).astype(jnp.int32), 3)


OBJECTIVES: dict[str, Callable] = {
    'cfm': cfm_objective,
}


# ------------------------------------------------------------------------------------------------
# The family contract

def init(config, rng: jax.Array, example_batch: Batch) -> dict[str, PyTree]:
    x = jnp.asarray(example_batch['image'][:1])
    params = network(config).init(rng, x, jnp.zeros((1,), jnp.float32))['params']
    return train_state.create(config, params)


def train_step(config, state, batch: Batch, rng: jax.Array):
    objective = config_lib.objective(OBJECTIVES, config.objective)
    return train_state.step_by_noise_level(config, state, batch, rng, objective, lambda q: q)


def integrate(config, field: Field, x, t0: float, t1: float, name: str):
    """(x at t1, NFE) with the named solver."""
    method, steps = solver(name)
    if method == 'dopri5':
        return ode.dopri5(field, x, t0, t1, config.sampler.rtol, config.sampler.atol)
    return ode.integrate(field, x, t0, t1, steps, method)


def sample_with_nfe(config, params, rng: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
    """(x [num, H, W, C] from the ODE at t = 1, its NFE), images clipped to the value range."""
    shape = (num,) + tuple(data_lib.dataset_info(config.data).shape)
    x, nfe = integrate(config, make_velocity(config, params), jax.random.normal(rng, shape),
                       0.0, 1.0, config.sampler.name)
    bounds = data_lib.value_range(config.data)
    return (jnp.clip(x, *bounds) if bounds is not None else x), nfe


def sample(config, params, rng: jax.Array, num: int, labels=None) -> jax.Array:
    """x [num, H, W, C]: the sampler's ODE from N(0, I); unconditional, so `labels` is unused."""
    del labels
    return sample_with_nfe(config, params, rng, num)[0]


def log_likelihood(config, params, batch: Batch, rng: jax.Array) -> jax.Array:
    """log p(x) [B] in nats through the instantaneous change of variables, from the data (t = 1)
    back to N(0, I) at t = 0 (Hutchinson's estimate with eval.hutchinson, keyed by the example)."""
    x = batch['image']
    probe = None
    if config.eval.hutchinson:
        probe = 2.0 * (noise.uniform(rng, batch['index'], x.shape[1:]) < 0.5) - 1.0  # Rademacher
    base = lambda z: jnp.sum(jax.scipy.stats.norm.logpdf(z), tuple(range(1, z.ndim)))  # noqa: E731
    method, steps = solver(config.eval.likelihood_solver)
    if method == 'dopri5':
        raise ValueError('the likelihood needs a fixed-step eval.likelihood_solver (rk410, ...).')
    log_p, _, _ = ode.log_likelihood(make_velocity(config, params), x, 1.0, 0.0, base, steps,
                                     method, noise=probe)
    return log_p


def evaluate(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> dict[str, float]:
    """The test NLL through the ODE (with its standard error over the examples, which holds
    Hutchinson's noise too), the test loss, and the sampler's NFE; on toy data the true NLL, the
    KL estimate and the mode coverage of eval.num_samples samples."""
    k_ll, k_loss, k_sample = jax.random.split(rng, 3)
    fn = jax.jit(lambda b: {'ll': log_likelihood(config, params, b, k_ll),
                            'loss': cfm_loss(config, make_velocity(config, params), b,
                                             k_loss)[0]})
    out = data_lib.map_batches(fn, data, config.eval.batch_size)
    nll = -out['ll']
    dims = int(np.prod(data['image'].shape[1:]))
    prep = data_lib.preprocessing(config.data)
    result = {**metrics.likelihood_record(float(np.mean(nll)), dims, prep),
              'nll_std_error_nats': float(np.std(nll) / math.sqrt(len(nll))),
              'nll_divergence': 'hutchinson' if config.eval.hutchinson else 'exact',
              'nll_solver': config.eval.likelihood_solver,
              'test_loss': float(np.mean(out['loss']))}
    num = config.eval.num_samples if data_lib.is_toy(config.data.name) else config.eval.batch_size
    points, nfe = jax.jit(lambda key: sample_with_nfe(config, params, key, num))(k_sample)
    result['sampler_nfe'] = int(nfe)
    if data_lib.is_toy(config.data.name):
        result |= units.toy_reference(config.data, data['image'], result)
        toy = data_lib.toy_distribution(config.data.name)
        if toy.modes is not None:
            result |= modes_lib.mode_coverage(np.asarray(points).reshape(num, -1), toy.modes,
                                              toy.mode_stds)
    return result


def figures(config, params, data: dict[str, np.ndarray], rng: jax.Array, out_dir: str) -> list[str]:
    num = viz.num_samples(config.data)
    samples = jax.jit(lambda key: sample(config, params, key, num))(rng)
    return viz.save_samples(config.data, samples, f'{out_dir}/samples.png',
                            f'Flow matching samples ({config.sampler.name}, {config.model.path} '
                            f'path)', reference=data['image'])
