"""Score matching: noise-conditional score networks trained by denoising score matching over a
geometric ladder of noise levels and sampled by annealed Langevin dynamics (NCSN: Song & Ermon
2019; with the improvements of NCSNv2: Song & Ermon 2020).

The ladder (Song & Ermon 2019, Sec. 4.1) is geometric, sigma_1 > sigma_2 > ... > sigma_L:

    sigma_i = sigma_max (sigma_min / sigma_max)^((i - 1) / (L - 1)),   L = model.num_scales

NCSNv2's Technique 1 puts sigma_max near the largest distance between two training points (so the
first level mixes all modes), and Technique 2 picks L so that neighbouring levels overlap.

Denoising score matching (Vincent 2011): perturbing x by N(0, sigma^2 I) gives x~ = x + sigma z,
whose conditional score is grad log q(x~ | x) = -(x~ - x) / sigma^2 = -z / sigma. The score model
is s(x, sigma) = net(x, sigma) / sigma: NCSNv2's Technique 3 divides by sigma (the true score grows
like 1 / sigma), here with the network also told sigma. The loss weight is lambda(sigma) = sigma^2
(Song & Ermon 2019, Eq. 6), so the objective is

    L(theta) = E_{i ~ U{1..L}} E_x E_z [ 1/2 || sigma_i s(x + sigma_i z, sigma_i) + z ||^2 ]
             = E [ 1/2 || net(x~, sigma_i) + z ||^2 ],

summed over the dimensions and averaged over the examples (`loss`, `dsm_loss`): the zero score
scores D/2, and the optimum stays above 0 (it is 1/2 E || z - E[z | x~] ||^2). It is minimised by
the score of the perturbed data, s*(x~, sigma) = grad log p_sigma(x~) with p_sigma = p * N(0,
sigma^2 I); for data N(mu, S) that is -(S + sigma^2 I)^-1 (x~ - mu) (tests/test_score.py checks
it). Tweedie's formula turns a score into a denoiser: E[x | x~] = x~ + sigma^2 grad log p_sigma(x~)
(Efron 2011).

The network sees sigma through the U-Net's (or the MLP denoiser's) sinusoidal timestep embedding of

    t(sigma) = 1000 log(sigma / sigma_min) / log(sigma_max / sigma_min)   in [0, 1000],

the range that embedding was made for (DDPM's t; here sigma_min is t = 0 and sigma_max t = 1000).

Sampling is annealed Langevin dynamics (Song & Ermon 2019, Alg. 1), all L T steps in one `lax.scan`:

    x ~ N(0, sigma_1^2 I)
    for i = 1 .. L:  alpha_i = eps sigma_i^2 / sigma_L^2
        repeat T times:  x <- x + alpha_i s(x, sigma_i) + sqrt(2 alpha_i) z,   z ~ N(0, I)
    optionally x <- x + sigma_L^2 s(x, sigma_L)   (a final denoising step, Tweedie's E[x | x~]:
                                                   Jolicoeur-Martineau et al. 2021; NCSNv2 too)

with eps = sampler.step_size and T = sampler.steps_per_level. The step is the fraction
eps / sigma_L^2 of each level's noise variance; Langevin on a Gaussian of variance v diverges once
a step reaches 2 v, so the config needs eps < 2 sigma_L^2. Images are clipped to the data's value
range at the end, toy points are not. The sampler settings may change on an existing workdir:
`python eval.py --workdir W --set sampler.steps_per_level=5`.

There is no exact likelihood: eval.json has the test DSM loss (its mean over the ladder and by
quarter of it), and on toy data the mode coverage (grids) and the true density's NLL of the
samples, `samples_true_nll_nats`, beside the data's own `true_nll_nats`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmodels import config as config_lib, data as data_lib, viz
from genmodels.config import ConfigError
from genmodels.metrics import modes as modes_lib, ode_likelihood
from genmodels.nn import noise, ode, unet
from genmodels.training import train_state

PyTree = Any
Batch = dict[str, jax.Array]
ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x [B, ...], sigma [B] or []) -> [B, ...]

CONFIG_SCHEMA = {
    'model': {
        **unet.MODEL_SCHEMA,            # the U-Net's and the MLP denoiser's keys
        'sigma_max': float,             # sigma_1: about the largest distance between data points
        'sigma_min': float,             # sigma_L: below the data's finest detail
        'num_scales': int,              # L: levels of the geometric ladder
    },
    'sampler': {
        'step_size': float,             # eps: alpha_i = eps sigma_i^2 / sigma_L^2; < 2 sigma_L^2
        'steps_per_level': int,         # T: Langevin steps at each level
        'denoise': bool,                # a final step x + sigma_L^2 s(x, sigma_L)
        'ode_solver': str,              # '' : annealed Langevin; a solver (heun50, rk420, ...):
                                        # the probability-flow ODE from sigma_max to sigma_min
    },
    'eval': {                           # added to the shared eval section
        'loss_levels': int,             # levels of the test DSM loss, evenly spaced from sigma_1
                                        # to sigma_L (0: all L)
        'ode_likelihood_solver': str,   # the probability-flow likelihood's solver ('' = off)
    },
}
# Sampler settings may change on an existing workdir: eval.py --set sampler.step_size=1e-5
# train.remat='blocks' recomputes these in the backward pass (model.architecture='unet' only).
REMAT_BLOCKS = ('U-Net residual blocks', 'U-Net attention blocks')
RESUMABLE_KEYS = tuple(f'sampler.{k}' for k in CONFIG_SCHEMA['sampler']) + (
    'eval.loss_levels', 'eval.ode_likelihood_solver')
# Keys added after runs were saved without them, with the values that reproduce those runs.
ADDED_KEYS = {'sampler.ode_solver': '', 'eval.ode_likelihood_solver': ''}

MAX_CONDITION = 1000.0  # t(sigma_max): the top of the timestep range the embedding was made for


def check_config(config: ml_collections.ConfigDict) -> None:
    m, s = config.model, config.sampler
    if m.architecture not in ('unet', 'mlp'):
        raise ConfigError(f"model.architecture must be 'unet' or 'mlp', got {m.architecture!r}.")
    if data_lib.is_toy(config.data.name) and m.architecture != 'mlp':
        raise ConfigError("toy data are points, not images: use model.architecture='mlp'.")
    if not 0.0 < m.sigma_min < m.sigma_max:
        raise ConfigError(f'the noise ladder needs 0 < model.sigma_min < model.sigma_max, got '
                          f'sigma_min={m.sigma_min} and sigma_max={m.sigma_max}.')
    if m.num_scales < 2:
        raise ConfigError(f'model.num_scales must be at least 2 (a ladder from sigma_max to '
                          f'sigma_min), got {m.num_scales}.')
    if not 0.0 < s.step_size < 2.0 * m.sigma_min ** 2:
        raise ConfigError(f'sampler.step_size must be in (0, 2 sigma_min^2 = '
                          f'{2.0 * m.sigma_min ** 2:g}): Langevin steps of alpha_i = eps '
                          f'sigma_i^2 / sigma_min^2 diverge beyond that; got {s.step_size}.')
    if s.steps_per_level < 1:
        raise ConfigError(f'sampler.steps_per_level must be positive, got {s.steps_per_level}.')
    for key in ('sampler.ode_solver', 'eval.ode_likelihood_solver'):
        section, name = key.split('.')
        if config[section][name]:
            try:
                ode.parse(config[section][name])
            except ValueError as e:
                raise ConfigError(f'{key}: {e}') from None
    if config.eval.loss_levels == 1 or not 0 <= config.eval.loss_levels <= m.num_scales:
        raise ConfigError(f'eval.loss_levels must be 0 (all levels) or in [2, model.num_scales = '
                          f'{m.num_scales}] (both ends and levels between), got '
                          f'{config.eval.loss_levels}.')


# ------------------------------------------------------------------------------------------------
# The ladder, the network and the score

def sigmas(config) -> np.ndarray:
    """The ladder sigma_1 > ... > sigma_L [L], float32."""
    m = config.model
    return np.geomspace(m.sigma_max, m.sigma_min, m.num_scales).astype(np.float32)


def condition(config, sigma: jax.Array) -> jax.Array:
    """t(sigma) = 1000 log(sigma / sigma_min) / log(sigma_max / sigma_min): what the network's
    timestep embedding sees."""
    m = config.model
    return MAX_CONDITION * jnp.log(sigma / m.sigma_min) / math.log(m.sigma_max / m.sigma_min)


def network(config):
    m = config.model
    if m.architecture == 'mlp':
        return unet.MLPDenoiser(tuple(m.hidden), m.embed_dim)
    return unet.UNet(m.channels, tuple(m.channel_mults), m.num_res_blocks,
                     tuple(m.attention_resolutions), m.dropout, num_heads=m.num_heads,
                     remat=config.train.remat == 'blocks')


def _per_example(sigma: jax.Array, x: jax.Array) -> jax.Array:
    """sigma [] or [B] -> [B, 1, ..., 1], broadcastable against x [B, ...]."""
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    return sigma.reshape((-1,) + (1,) * (x.ndim - 1))


def make_score(config, params, *, train: bool = False,
               dropout_rng: jax.Array | None = None) -> ScoreFn:
    """s(x [B, ...], sigma [] or [B]) = net(x, t(sigma)) / sigma."""
    net = network(config)
    rngs = {'dropout': dropout_rng} if train else {}

    def score(x, sigma):
        sigma = _per_example(sigma, x)
        t = condition(config, sigma.reshape(-1))
        return net.apply({'params': params}, x, t, None, train=train, rngs=rngs) / sigma

    return score


def dsm_loss(score: ScoreFn, x: jax.Array, sigma: jax.Array, z: jax.Array) -> jax.Array:
    """1/2 || sigma s(x + sigma z, sigma) + z ||^2 per example [B] (lambda(sigma) = sigma^2): data
    x [B, ...], sigma [] or [B], noise z like x."""
    s = _per_example(sigma, x)
    residual = s * score(x + s * z, sigma) + z
    return 0.5 * jnp.sum(residual ** 2, axis=tuple(range(1, x.ndim)))


# ------------------------------------------------------------------------------------------------
# Objectives: (config, params, batch, rng, dropout_rng) -> (loss [B], ladder index [B])

def dsm_objective(config, params, batch: Batch, rng: jax.Array, dropout_rng: jax.Array):
    """Denoising score matching at a uniform level of the ladder per example (Song & Ermon 2019,
    Eq. 6, lambda(sigma) = sigma^2); each example's level and noise keyed by its index."""
    x, index = batch['image'], batch['index']
    k_level, k_z = jax.random.split(rng)
    level = noise.randint(k_level, index, 0, config.model.num_scales)
    z = noise.normal(k_z, index, x.shape[1:])
    score = make_score(config, params, train=True, dropout_rng=dropout_rng)
    return dsm_loss(score, x, jnp.asarray(sigmas(config))[level], z), level


OBJECTIVES: dict[str, Callable] = {
    'dsm': dsm_objective,
}


# ------------------------------------------------------------------------------------------------
# Annealed Langevin dynamics

def annealed_langevin(score: ScoreFn, x: jax.Array, ladder: jax.Array, step_size: float,
                      steps_per_level: int, rng: jax.Array, *, denoise: bool, keep: int = 0):
    """Song & Ermon 2019, Alg. 1, from x [B, ...] down the ladder sigma_1 > ... > sigma_L [L]: one
    `lax.scan` over the L T steps, then the optional denoising step. With keep > 0 also returns x
    after `keep` evenly spaced steps [keep, B, ...] (the last: the end of the chain, before the
    denoising step); that holds every step's x, so keep it for a few examples."""
    ladder = jnp.asarray(ladder, jnp.float32)
    sigma_last = ladder[-1]

    def step(x, k):
        sigma = ladder[k // steps_per_level]
        alpha = step_size * (sigma / sigma_last) ** 2
        z = jax.random.normal(jax.random.fold_in(rng, k), x.shape, x.dtype)
        x = x + alpha * score(x, sigma) + jnp.sqrt(2.0 * alpha) * z
        return x, (x if keep else None)

    num_steps = len(ladder) * steps_per_level
    x, xs = jax.lax.scan(step, x, jnp.arange(num_steps))
    if denoise:
        x = x + sigma_last ** 2 * score(x, sigma_last)
    if not keep:
        return x
    kept = np.linspace(0, num_steps - 1, keep).round().astype(int)
    return x, xs[kept]


# ------------------------------------------------------------------------------------------------
# The probability-flow ODE (Song et al. 2021, Eq. 13, of the variance-exploding process)

def probability_flow(score: ScoreFn) -> Callable:
    """field(x, tau) of the probability-flow ODE in tau = log sigma: the marginal p_sigma = p * N(0,
    sigma^2 I) moves as dx/dsigma = -sigma grad log p_sigma(x), so dx/dtau = -sigma^2 s(x, sigma).
    Sampling integrates tau from log sigma_max down to log sigma_min; the likelihood, upwards."""
    def field(x, tau):
        sigma = jnp.exp(jnp.asarray(tau, jnp.float32))
        return -sigma ** 2 * score(x, sigma)

    return field


def ode_log_likelihood(config, params, batch: Batch, rng: jax.Array) -> jax.Array:
    """log p(y) [B] in nats through the probability-flow ODE from sigma_min, where the data stand,
    to sigma_max, where the base is N(0, sigma_max^2 I) (as Song et al. 2021 score VE models;
    genmodels/metrics/ode_likelihood.py dequantises images)."""
    m = config.model
    return ode_likelihood.log_likelihood(
        config, probability_flow(make_score(config, params)), batch, rng,
        math.log(m.sigma_min), math.log(m.sigma_max), base_std=m.sigma_max)


# ------------------------------------------------------------------------------------------------
# The family contract

def init(config, rng: jax.Array, example_batch: Batch) -> dict[str, PyTree]:
    x = jnp.asarray(example_batch['image'][:1])
    params = network(config).init(rng, x, jnp.zeros((1,), jnp.float32))['params']
    return train_state.create(config, params)


def train_step(config, state, batch: Batch, rng: jax.Array):
    objective = config_lib.objective(OBJECTIVES, config.objective)
    # The loss by quarter of the ladder, q0 the smallest sigmas (as ddpm's loss_q0 is the least
    # noise): the small levels carry the detail and the largest irreducible part.
    levels = config.model.num_scales
    return train_state.step_by_noise_level(
        config, state, batch, rng, objective, lambda level: (4 * (levels - 1 - level)) // levels)


def sample(config, params, rng: jax.Array, num: int, labels=None, *, keep: int = 0):
    """x [num, H, W, C] by annealed Langevin dynamics from N(0, sigma_1^2 I) with the config's
    sampler, clipped to the data's value range (images); the model is unconditional, so `labels`
    is unused. With keep > 0 returns (x, the chain after `keep` evenly spaced steps
    [keep, num, ...])."""
    del labels
    s = config.sampler
    ladder = sigmas(config)
    shape = (num,) + tuple(data_lib.dataset_info(config.data).shape)
    k_init, k_chain = jax.random.split(rng)
    x = float(ladder[0]) * jax.random.normal(k_init, shape)
    score = make_score(config, params)
    if s.ode_solver:
        method, steps = ode.parse(s.ode_solver)
        tau_max, tau_min = math.log(config.model.sigma_max), math.log(config.model.sigma_min)
        out = ode.integrate(probability_flow(score), x, tau_max, tau_min, steps, method,
                            trajectory=bool(keep))
        if keep:
            kept = np.linspace(0, steps - 1, keep).round().astype(int)
            out = (out[0], out[2][kept])
        else:
            out = out[0]
        if s.denoise:
            sigma_last = float(ladder[-1])
            out = ((out[0] + sigma_last ** 2 * score(out[0], sigma_last), out[1]) if keep
                   else out + sigma_last ** 2 * score(out, sigma_last))
    else:
        out = annealed_langevin(score, x, ladder, s.step_size, s.steps_per_level, k_chain,
                                denoise=s.denoise, keep=keep)
    x, trace = out if keep else (out, None)
    bounds = data_lib.value_range(config.data)
    if bounds is not None:
        x = jnp.clip(x, *bounds)
    return (x, trace) if keep else x


def loss_levels(config) -> np.ndarray:
    """The ladder indices of the test DSM loss: eval.loss_levels evenly spaced ones from 0
    (sigma_1) to L - 1 (sigma_L); all L when 0."""
    num = config.model.num_scales
    k = config.eval.loss_levels or num
    return np.unique(np.linspace(0, num - 1, k).round().astype(int))


def level_losses(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> np.ndarray:
    """The DSM loss of every test example at each level of `loss_levels` [levels, N], noise keyed
    by (level, example index)."""
    score = make_score(config, params)
    ladder = jnp.asarray(sigmas(config))

    @jax.jit
    def losses(batch, level):
        z = noise.normal(jax.random.fold_in(rng, level), batch['index'], batch['image'].shape[1:])
        return {'loss': dsm_loss(score, batch['image'], ladder[level], z)}

    return np.stack([data_lib.map_batches(lambda b, i=i: losses(b, i), data,
                                          config.eval.batch_size)['loss']
                     for i in loss_levels(config)])


def evaluate(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> dict[str, float]:
    """The test DSM loss (the objective, 1/2 || sigma s + z ||^2 per example): its mean over the
    evaluated levels, by quarter of the ladder (q0: the smallest sigmas) and at both ends; on toy
    data also the true density's NLL of eval.num_samples samples and, on Gaussian grids, their
    mode coverage."""
    k_loss, k_sample = jax.random.split(rng)
    levels = loss_levels(config)
    per_level = level_losses(config, params, data, k_loss).mean(axis=1)          # [levels]
    from_smallest = config.model.num_scales - 1 - levels
    out = {'dsm_loss': float(np.mean(per_level)),
           'dsm_loss_sigma_max': float(per_level[0]),   # levels[0] is sigma_1
           'dsm_loss_sigma_min': float(per_level[-1]),  # levels[-1] is sigma_L
           'dsm_loss_levels': len(levels)}
    for q in range(4):
        mask = (4 * from_smallest) // config.model.num_scales == q
        if mask.any():
            out[f'dsm_loss_q{q}'] = float(np.mean(per_level[mask]))
    if config.eval.ode_likelihood_solver:
        out |= ode_likelihood.evaluate(config, data, jax.random.fold_in(k_loss, 1),
                                       lambda b, r: ode_log_likelihood(config, params, b, r))
    if data_lib.is_toy(config.data.name):
        out |= _toy_metrics(config, params, k_sample)
    return out


def _sample_points(config, params, rng: jax.Array, num: int) -> np.ndarray:
    """`num` toy samples as points [num, D]; one compiled chain."""
    points = jax.jit(lambda key: sample(config, params, key, num))(rng)
    return np.asarray(points).reshape(num, -1)


def _toy_metrics(config, params, rng: jax.Array) -> dict[str, float]:
    points = _sample_points(config, params, rng, config.eval.num_samples)
    return modes_lib.of_toy_samples(points, data_lib.toy_distribution(config.data.name),
                                    true_nll=True)


STRIP_POINTS = 10  # columns of the Langevin strip: the chain at 9 evenly spaced steps, then x


def figures(config, params, data: dict[str, np.ndarray], rng: jax.Array, out_dir: str) -> list[str]:
    """Samples (viz.save_samples); images: also the Langevin strip (one row per sample, the chain
    from sigma_1 on the left to the final sample on the right); 2D toys: also the learned score
    beside the true one (`_toy_figures`)."""
    s = config.sampler
    what = (f'{config.model.num_scales} levels x {s.steps_per_level} Langevin steps'
            f'{" + denoising" if s.denoise else ""}')
    num = viz.num_samples(config.data)
    samples = jax.jit(lambda key: sample(config, params, key, num))(rng)
    paths = viz.save_samples(config.data, samples, f'{out_dir}/samples.png',
                             f'Score model samples ({what})', reference=data['image'])
    if data_lib.is_toy(config.data.name):
        return paths + _toy_figures(config, params, data, np.asarray(samples).reshape(num, -1),
                                    out_dir)
    lo, hi = data_lib.value_range(config.data)
    x, trace = jax.jit(lambda key: sample(config, params, key, 8, keep=STRIP_POINTS - 1))(
        jax.random.fold_in(rng, 1))
    strip = np.concatenate([np.asarray(trace), np.asarray(x)[None]])     # [points, 8, H, W, C]
    rows = [np.clip(strip[:, i], lo, hi) for i in range(strip.shape[1])]
    paths.append(viz.save_rows(rows, f'{out_dir}/langevin.png',
                               [f'sigma {config.model.sigma_max:g} -> {config.model.sigma_min:g}']
                               * len(rows), lo, hi))
    return paths


def _toy_figures(config, params, data, points: np.ndarray, out_dir: str) -> list[str]:
    """2D toys: the learned score at sigma_min and at the middle of the ladder beside the true
    score grad log p, over the true log-density, with 500 of the samples `points` [N, 2]."""
    toy = data_lib.toy_distribution(config.data.name)
    if toy.dim != 2:
        return []
    truth = data['image'].reshape(len(data['image']), -1)
    log_p = lambda x: np.asarray(toy.log_prob(x))  # noqa: E731
    ladder = sigmas(config)
    score = jax.jit(make_score(config, params))
    true_score = jax.jit(jax.vmap(jax.grad(lambda x: toy.log_prob(x[None])[0])))

    def learned(sigma):
        return lambda g: np.asarray(score(jnp.asarray(g).reshape(-1, 2, 1, 1),
                                          jnp.float32(sigma))).reshape(-1, 2)

    middle = float(ladder[len(ladder) // 2])
    fields = {f'learned score, sigma = {ladder[-1]:.3g}': learned(ladder[-1]),
              f'learned score, sigma = {middle:.3g}': learned(middle),
              'true score grad log p': lambda g: np.asarray(true_score(jnp.asarray(g)))}
    return [viz.save_vector_fields_2d(truth, log_p, fields, f'{out_dir}/score_field.png',
                                      samples=points[:500])]
