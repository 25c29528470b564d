"""k-means in jax.numpy: k-means++ seeding, random seeding, Lloyd iterations.

Used to initialise Gaussian mixtures (`em.py`); `x` may be sharded over a mesh, every reduction
below is a plain `jnp` op that jit turns into a cross-device sum.
"""

import math

import jax
import jax.numpy as jnp
from jax import lax


def squared_distances(x, centers):
    """||x_n - c_k||^2 as |x|^2 - 2 x.c + |c|^2 (one matmul), clamped at 0.  # [N, K]"""
    sq = (jnp.sum(x * x, axis=1)[:, None] - 2.0 * x @ centers.T
          + jnp.sum(centers * centers, axis=1)[None, :])
    return jnp.maximum(sq, 0.0)


def kmeans_plusplus(x, k, rng, weights=None, n_local_trials=None):
    """Greedy k-means++ (Arthur & Vassilvitskii 2007), as scikit-learn's `kmeans_plusplus`.

    Each new centre is the best of `n_local_trials` candidates drawn with probability
    proportional to w_n D(x_n)^2 (inverse CDF of one block of uniforms drawn up front), the one
    that lowers the potential sum_n w_n D(x_n)^2 most.

    Returns (centers [k, D], indices [k]).
    """
    n = x.shape[0]
    w = jnp.ones((n,), x.dtype) if weights is None else weights.astype(x.dtype)
    trials = 2 + int(math.log(k)) if n_local_trials is None else n_local_trials
    u = jax.random.uniform(rng, (k, trials), x.dtype)

    def draw(mass, u):  # indices with P(n) = mass_n / sum(mass)
        cdf = jnp.cumsum(mass)
        below = jnp.sum(cdf[None, :] < (u * cdf[-1])[:, None], axis=1)  # = searchsorted
        return jnp.minimum(below, n - 1).astype(jnp.int32)

    first = draw(w, u[0, :1])[0]
    closest = squared_distances(x, x[first][None])[:, 0]  # [N]
    indices = jnp.zeros((k,), jnp.int32).at[0].set(first)

    def add_center(c, carry):
        indices, closest = carry
        candidates = draw(w * closest, u[c])
        dist = jnp.minimum(closest[None], squared_distances(x, x[candidates]).T)  # [T, N]
        best = jnp.argmin(dist @ w)
        return indices.at[c].set(candidates[best]), dist[best]

    indices, _ = lax.fori_loop(1, k, add_center, (indices, closest))
    return x[indices], indices


def random_from_data(x, k, rng):
    """k distinct data points chosen uniformly. Returns (centers [k, D], indices [k])."""
    indices = jax.random.choice(rng, x.shape[0], (k,), replace=False)
    return x[indices], indices


def lloyd(x, centers, weights=None, max_iter=300, tol=1e-4):
    """Lloyd's algorithm from `centers`; stops when the total squared centre shift is below
    tol * mean feature variance (scikit-learn's rule). Empty clusters keep their centre.

    Returns (centers [K, D], labels [N]).
    """
    k = centers.shape[0]
    w = jnp.ones((x.shape[0],), x.dtype) if weights is None else weights.astype(x.dtype)
    mean = (w @ x) / jnp.sum(w)
    tol = tol * jnp.mean((w @ (x - mean) ** 2) / jnp.sum(w))

    def update(centers):
        labels = jnp.argmin(squared_distances(x, centers), axis=1)
        sums = jax.ops.segment_sum(w[:, None] * x, labels, k)
        counts = jax.ops.segment_sum(w, labels, k)
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1e-30)[:, None], centers)

    def cond(carry):
        it, _, shift = carry
        return (it < max_iter) & (shift > tol)

    def body(carry):
        it, centers, _ = carry
        new = update(centers)
        return it + 1, new, jnp.sum((new - centers) ** 2)

    _, centers, _ = lax.while_loop(cond, body, (0, centers, jnp.asarray(jnp.inf, x.dtype)))
    return centers, jnp.argmin(squared_distances(x, centers), axis=1)
