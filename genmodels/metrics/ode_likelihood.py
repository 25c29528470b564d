"""The probability-flow likelihood that the diffusion and score families share: log p(x) through the
instantaneous change of variables along a family's probability-flow ODE (genmodels/nn/ode.py),
integrated with eval.ode_likelihood_solver from the data's time to the base's.

Toy points get the exact divergence. Images get Hutchinson's estimate (a Rademacher probe per
example) on dequantised pixels, y = x + w (u - 1/2) with u ~ U[0, 1)^D per example and w the
spacing of the pixel levels, so -log P(x) <= -log p(y) - D log w (units.ode_nll_record).
"""

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmodels import data as data_lib
from genmodels.metrics import units
from genmodels.nn import noise, ode


def log_likelihood(config: ml_collections.ConfigDict, field: Callable, batch: dict,
                   rng: jax.Array, t_data: float, t_base: float, base_std: float = 1.0
                   ) -> jax.Array:
    """log p(y) [B] in nats: `field` integrated from t_data to t_base, where the base is
    N(0, base_std^2 I)."""
    x, index = batch['image'], batch['index']
    k_deq, k_probe = jax.random.split(rng)
    probe = None
    if not data_lib.is_toy(config.data.name):
        x = x + units.level_spacing(config.data) * (noise.uniform(k_deq, index, x.shape[1:]) - 0.5)
        probe = 2.0 * (noise.uniform(k_probe, index, x.shape[1:]) < 0.5) - 1.0  # Rademacher

    def base(z):
        return jnp.sum(jax.scipy.stats.norm.logpdf(z, scale=base_std), tuple(range(1, z.ndim)))

    method, steps = ode.parse(config.eval.ode_likelihood_solver)
    log_p, _, _ = ode.log_likelihood(field, x, t_data, t_base, base, steps, method, noise=probe)
    return log_p


def evaluate(config: ml_collections.ConfigDict, data: dict[str, np.ndarray], rng: jax.Array,
             batch_log_likelihood: Callable) -> dict[str, float]:
    """eval.json's ode_nll_* over the split, batch_log_likelihood(batch, rng) -> [B] jitted once."""
    fn = jax.jit(lambda b: batch_log_likelihood(b, rng))
    nll = -data_lib.map_batches(lambda b: {'ll': fn(b)}, data, config.eval.batch_size)['ll']
    method, steps = ode.parse(config.eval.ode_likelihood_solver)
    return units.ode_nll_record(nll, int(np.prod(data['image'].shape[1:])), config.data,
                                config.eval.ode_likelihood_solver, ode.METHODS[method] * steps)
