"""Gaussian maximum likelihood in closed form (Bishop, PRML eqs. 2.121-2.122), weighted or not.

params is a plain dict {'mean', 'covariance'}: shapes [] and [] for 1D data x [N], [D] and [D, D]
for x [N, D].
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular


def _as_float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


@jax.jit
def fit(x, weights=None):
    """mu* = sum_n w_n x_n / sum w,  Sigma* = sum_n w_n (x_n - mu*)(x_n - mu*)^T / sum w.

    With w = 1 these are PRML 2.121-2.122. x: [N] or [N, D]; weights: optional [N], non-negative.
    """
    x = _as_float(x)
    w = jnp.ones(x.shape[:1], x.dtype) if weights is None else jnp.asarray(weights, x.dtype)
    w = w / jnp.sum(w)
    mean = w @ x  # [] or [D]
    centered = x - mean  # two passes: no cancellation between E[x x^T] and mu mu^T
    if x.ndim == 1:
        return {'mean': mean, 'covariance': w @ centered ** 2}
    return {'mean': mean, 'covariance': (centered * w[:, None]).T @ centered}


@jax.jit
def log_prob(params, x):
    """log N(x; mu, Sigma) = -D/2 log 2pi - log|L| - |L^{-1}(x - mu)|^2 / 2, Sigma = L L^T. # [N]"""
    mean, cov = params['mean'], params['covariance']
    x = _as_float(x).astype(mean.dtype)
    if mean.ndim == 0:
        return -0.5 * (math.log(2 * math.pi) + jnp.log(cov) + (x - mean) ** 2 / cov)
    chol = jnp.linalg.cholesky(cov)
    z = solve_triangular(chol, (x - mean).T, lower=True)  # [D, N]
    log_det = jnp.sum(jnp.log(jnp.diagonal(chol)))
    return -0.5 * mean.shape[0] * math.log(2 * math.pi) - log_det - 0.5 * jnp.sum(z * z, axis=0)


@functools.partial(jax.jit, static_argnames=('num',))
def sample(params, rng, num):
    """x = mu + L eps, eps ~ N(0, I).  # [num] or [num, D]"""
    mean, cov = params['mean'], params['covariance']
    eps = jax.random.normal(rng, (num,) + mean.shape, mean.dtype)
    if mean.ndim == 0:
        return mean + jnp.sqrt(cov) * eps
    return mean + eps @ jnp.linalg.cholesky(cov).T
