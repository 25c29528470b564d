"""Jacobian truncation of G's prior (Tanielian et al. 2020), sampler.jacobian_truncation = r > 0.

z is redrawn where |dG/dz| lies in the top r of its values under the prior, which removes the
samples G spreads on bridges between separate modes (results: docs/results/gan.md).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from genmodels.families.gan.networks import Generator, latents
from genmodels.metrics import labels as labels_lib
from genmodels.nn import noise

PyTree = Any

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
    classes = max(labels_lib.num_classes(config.data, config.model), 1)
    norms = jacobian_norms(g, config.model.latent_dim, params, g_in,
                           labels_lib.balanced(TRUNCATION_CALIBRATION, classes))
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
