"""The maths of flow matching, shared by its objectives, sampler and likelihood: the conditional
paths and their velocities, the time distributions, the network and its (guided) velocity field, the
source distribution, the minibatch OT coupling, the conditional flow-matching loss and the ODE
solve (the family's docstring, genmodels/families/flow_matching/__init__.py, has the formulas).
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from genmodels import data as data_lib
from genmodels.metrics import labels as labels_lib
from genmodels.nn import edm, noise, ode, transport, unet

PyTree = Any
Batch = dict[str, jax.Array]
Field = Callable[[jax.Array, jax.Array], jax.Array]

TIME_SCALE = 1000.0  # the network's timestep embedding sees 1000 t, the range it was made for


# The grids of the fixed-step solvers from t = 0 to 1 (`time_grid`), named by `spacing`:
#   uniform       equal steps in t
#   karras        EDM's noise levels (Karras et al. 2022, Eq. 5) of the path's noise-to-signal
#                 ratio, rho 7 from SIGMA_MAX to SIGMA_MIN, the end points moved to t = 0 and 1
#   logsnr        equal steps in log SNR over the same range
#   shift<S>      equal steps with the noise-to-signal ratio multiplied by S (Esser et al. 2024's
#                 time shift: t = u / (u + S (1 - u)) on the linear path); S > 1 takes smaller
#                 steps near the noise, S < 1 near the data
SPACINGS = ('uniform', 'karras', 'logsnr', 'shift<S>')
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0  # EDM's
_SPACING = re.compile(r'^(uniform|karras|logsnr)$|^shift(\d+(?:\.\d+)?)$')


def parse_spacing(spacing: str) -> tuple[str, float]:
    """('shift', 3.0) from 'shift3', (name, 1.0) for the others; ValueError naming the choices."""
    match = _SPACING.match(str(spacing))
    if not match or (match.group(2) is not None and float(match.group(2)) <= 0):
        raise ValueError(f'spacing {spacing!r}: expected uniform, karras, logsnr or shift<S> with '
                         f'S > 0 (e.g. shift3).')
    return ('shift', float(match.group(2))) if match.group(2) else (match.group(1), 1.0)


def parse_sampler(name: str) -> tuple[str, int, str]:
    """(method, steps, spacing) from `<method><steps>[_<spacing>]` ('heun10_karras' -> ('heun',
    10, 'karras'); spacing '' when the name sets none) or ('dopri5', 0, '')."""
    base, _, spacing = str(name).partition('_')
    if spacing:
        try:
            parse_spacing(spacing)
        except ValueError:
            raise ValueError(f'unknown ODE sampler {name!r}: its ending after _ must be uniform, '
                             f'karras, logsnr or shift<S>, e.g. heun10_karras or euler10_shift3.'
                             ) from None
    if base == 'dopri5':
        if spacing:
            raise ValueError(f'ODE sampler {name!r}: dopri5 chooses its own steps, so it takes no '
                             f'spacing; use dopri5.')
        return 'dopri5', 0, ''
    return (*ode.parse(base), spacing)


def solver(name: str) -> tuple[str, int]:
    """('dopri5', 0) or a fixed-step (method, steps) from a sampler name."""
    return parse_sampler(name)[:2]


def time_grid(config, steps: int, spacing: str) -> np.ndarray:
    """t [steps + 1] from 0 to 1 spread by `spacing` (SPACINGS): the noise-to-signal ratio sigma of
    each point, for u = i / steps, is EDM's level sigma(u) (karras), evenly spaced in log sigma
    (logsnr) or S times that of t = u (shift<S>), mapped to the path's time: t = 1 / (1 + sigma)
    on the linear path, t = 2 / pi arctan(1 / sigma) on the cosine path."""
    kind, shift = parse_spacing(spacing)
    u = np.linspace(0.0, 1.0, steps + 1)
    if kind == 'uniform':
        return u.astype(np.float32)
    inner = u[1:-1]
    if kind == 'karras':  # levels 1 .. steps - 1 of steps + 1 (the ends become t = 0 and 1)
        sigma = edm.karras_sigmas(steps + 1, SIGMA_MIN, SIGMA_MAX, RHO)[1:steps].astype(np.float64)
    elif kind == 'logsnr':
        sigma = np.exp(np.log(SIGMA_MAX) + inner * (np.log(SIGMA_MIN) - np.log(SIGMA_MAX)))
    else:
        sigma = shift * _noise_to_signal(config, inner)
    return np.concatenate([[0.0], _time_at(config, sigma), [1.0]]).astype(np.float32)


def _noise_to_signal(config, t: np.ndarray) -> np.ndarray:
    """The path's sigma_t / alpha_t at times t in (0, 1)."""
    if config.model.path == 'linear':
        return (1.0 - t) / t
    return 1.0 / np.tan(0.5 * math.pi * t)


def _time_at(config, sigma: np.ndarray) -> np.ndarray:
    """The inverse of `_noise_to_signal`: the path's time where sigma_t / alpha_t = sigma."""
    if config.model.path == 'linear':
        return 1.0 / (1.0 + sigma)
    return 2.0 / math.pi * np.arctan(1.0 / sigma)


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


def _num_classes(config) -> int:
    return labels_lib.num_classes(config.data, config.model)


def network(config):
    m = config.model
    if m.architecture == 'mlp':
        return unet.MLPDenoiser(tuple(m.hidden), m.embed_dim, _num_classes(config))
    return unet.UNet(m.channels, tuple(m.channel_mults), m.num_res_blocks,
                     tuple(m.attention_resolutions), m.dropout, _num_classes(config),
                     num_heads=m.num_heads, remat=config.train.remat == 'blocks')


def make_velocity(config, params, labels: jax.Array | None = None, *, train: bool = False,
                  dropout_rng: jax.Array | None = None,
                  guidance_scale: float | None = None) -> Field:
    """v(x [B, ...], t [] or [B]) -> [B, ...]; a conditional model's `labels` [B] (None: no
    label) with classifier-free guidance at `guidance_scale` (default the sampler's)."""
    net = network(config)
    rngs = {'dropout': dropout_rng} if train else {}
    scale = config.sampler.guidance_scale if guidance_scale is None else guidance_scale

    def apply(x, t, y):
        return net.apply({'params': params}, x, TIME_SCALE * t, y, train=train, rngs=rngs)

    def velocity(x, t):
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        if not config.model.conditional or labels is None or scale == 0.0:
            return apply(x, t, None)
        if scale == 1.0 or train:
            return apply(x, t, labels)
        none = jnp.full_like(labels, _num_classes(config))  # one pass over [cond; uncond]
        cond, uncond = jnp.split(apply(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                                       jnp.concatenate([labels, none])), 2)
        return uncond + scale * (cond - uncond)

    return velocity


# ------------------------------------------------------------------------------------------------
# The source distribution (t = 0)

def _source_toy(config):
    return None if config.model.source == 'normal' else data_lib.toy_distribution(
        config.model.source)


def source_sample(config, rng: jax.Array, index: jax.Array, shape) -> jax.Array:
    """x0 [B, *shape], row i keyed by (rng, index[i])."""
    toy = _source_toy(config)
    if toy is None:
        return noise.normal(rng, index, shape)
    points = jax.vmap(lambda k: toy.sample(k, 1)[0])(noise.keys(rng, index))
    return points.reshape((-1,) + tuple(shape))


def source_log_prob(config, z: jax.Array) -> jax.Array:
    """log p0(z) [B]."""
    toy = _source_toy(config)
    if toy is None:
        return jnp.sum(jax.scipy.stats.norm.logpdf(z), tuple(range(1, z.ndim)))
    return toy.log_prob(z.reshape(z.shape[0], -1))


def couple(config, x0: jax.Array, x1: jax.Array, rng: jax.Array) -> jax.Array:
    """x0 re-paired with x1 by minibatch OT (objective ot_cfm): row j is x1[j]'s partner."""
    cost = transport.squared_distances(x0, x1)          # [noise i, data j]
    if config.loss.ot_method == 'exact':
        partner = transport.assignment(cost.T)          # data j -> noise sigma(j)
    else:
        partner = transport.sample_plan(rng, transport.sinkhorn(cost, config.loss.sinkhorn_reg))
    return x0[partner]



# ------------------------------------------------------------------------------------------------
# The loss and the ODE

def cfm_loss(config, velocity: Field, batch: Batch, rng: jax.Array, coupled: bool = False):
    """(|| v(x_t, t) - u ||^2 [B], quarter of the path [B]) with x0 and t keyed by the index;
    `coupled`: x0 re-paired with the batch by minibatch OT."""
    x1, index = batch['image'], batch['index']
    k_t, k_x0, k_plan = jax.random.split(rng, 3)
    t = sample_times(config, k_t, index)
    x0 = source_sample(config, k_x0, index, x1.shape[1:])
    if coupled:
        x0 = couple(config, x0, x1, k_plan)
    xt, u = path(config, x0, x1, t)
    loss = jnp.sum((velocity(xt, t) - u) ** 2, axis=tuple(range(1, x1.ndim)))
    # q0 is the quarter nearest the data (t near 1), as the DDPM's q0 is the least noise.
    return loss, 3 - jnp.minimum((4 * t).astype(jnp.int32), 3)


def fixed_step_grid(config, name: str, t0: float, t1: float, spacing: str = ''):
    """(method, steps, times or None) of the fixed-step solver `name` run from t0 to t1 (0 and 1,
    either way): times is its grid in the direction of travel, None for equal steps. The grid is
    the name's ending's, else `spacing`'s."""
    method, steps, own = parse_sampler(name)
    spacing = own or spacing or 'uniform'
    if method == 'dopri5' or parse_spacing(spacing) == ('uniform', 1.0):
        return method, steps, None
    grid = time_grid(config, steps, spacing)
    return method, steps, (grid if t1 > t0 else grid[::-1])


def integrate(config, field: Field, x, t0: float, t1: float, name: str):
    """(x at t1, NFE) with the named solver; a fixed-step one over the grid its name's ending sets,
    else sampler.spacing's."""
    method, steps, times = fixed_step_grid(config, name, t0, t1, config.sampler.spacing)
    if method == 'dopri5':
        return ode.dopri5(field, x, t0, t1, config.sampler.rtol, config.sampler.atol)
    return ode.integrate(field, x, t0, t1, steps, method, times=times)
