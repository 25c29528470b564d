"""Gaussian kernel density estimation (Parzen 1962; Silverman 1986, ch. 4), SciPy's conventions.

  p(x) = sum_i w_i N(x; x_i, H),  sum_i w_i = 1

with kernel covariance H = h^2 I for a numeric bandwidth h, or H = f^2 Cov_w(data) for a rule
('scott', 'silverman', 'cv') as `scipy.stats.gaussian_kde` does (Cov_w: its weighted, bias-corrected
covariance). params is a plain dict: {'points': [N, D], 'log_weights': [N] (normalised),
'kernel_cholesky': [D, D] (L with L L^T = H), 'bandwidth': h or f}.
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import solve_triangular

from genmodels import xla_cpu
from genmodels.classical import chunks

RULES = ('scott', 'silverman', 'cv')


def effective_size(weights):
    """Kish's effective sample size (sum w)^2 / sum w^2."""
    return jnp.sum(weights) ** 2 / jnp.sum(weights ** 2)


def scott_factor(n_eff, d):
    """Scott (1992): f = n^(-1 / (d + 4))."""
    return n_eff ** (-1.0 / (d + 4))


def silverman_factor(n_eff, d):
    """Silverman (1986, eq. 4.14): f = (n (d + 2) / 4)^(-1 / (d + 4))."""
    return (n_eff * (d + 2) / 4.0) ** (-1.0 / (d + 4))


def data_covariance(x, weights):
    """sum_i w_i (x_i - m)(x_i - m)^T / (1 - sum_i w_i^2), w normalised: numpy.cov(aweights=w)."""
    w = weights / jnp.sum(weights)
    centered = x - w @ x
    return (centered * w[:, None]).T @ centered / (1.0 - jnp.sum(w ** 2))


def as_2d(x):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x[:, None] if x.ndim == 1 else x


def _params(x, weights, chol, bandwidth):
    return {'points': x, 'log_weights': jnp.log(weights / jnp.sum(weights)),
            'kernel_cholesky': chol, 'bandwidth': jnp.asarray(bandwidth, x.dtype)}


def fit(x, bandwidth='scott', weights=None, rng=None, cv_factors=None, cv_holdout=0.2,
        cv_max_holdout=2048):
    """KDE parameters for data x [N] or [N, D] with optional non-negative weights [N].

    bandwidth: a number h (H = h^2 I), 'scott' or 'silverman' (H = f^2 Cov_w with SciPy's factors
    on Kish's effective n), or 'cv': f maximising the held-out log-likelihood over the grid
    `cv_factors` (default: Scott's f times 2^k, k = -4, -3.75, ..., 1), all grid points evaluated
    together under vmap. The held-out set is a random fraction `cv_holdout` of the rows (at most
    `cv_max_holdout`).
    """
    x = as_2d(x)
    n, d = x.shape
    w = jnp.ones((n,), x.dtype) if weights is None else jnp.asarray(weights, x.dtype)
    if not isinstance(bandwidth, str):
        if not bandwidth > 0:
            raise ValueError(
                f'bandwidth={bandwidth!r}; expected a positive number or one of {RULES}.')
        return _params(x, w, bandwidth * jnp.eye(d, dtype=x.dtype), bandwidth)
    if bandwidth not in RULES:
        raise ValueError(f'bandwidth={bandwidth!r}; expected a positive number or one of {RULES}.')
    cov_chol = jnp.linalg.cholesky(data_covariance(x, w))
    if bandwidth == 'cv':
        if rng is None:
            raise ValueError(
                "bandwidth='cv' needs rng (a jax.random.key) to choose the held-out rows.")
        factor = cv_factor(x, w, rng, cv_factors, cv_holdout, cv_max_holdout)
    else:
        rule = scott_factor if bandwidth == 'scott' else silverman_factor
        factor = rule(effective_size(w), d)
    return _params(x, w, factor * cov_chol, factor)


def streaming_logsumexp(values, blocks, num_queries, dtype):
    """log sum_j exp(values(block)[i, j]) over a scan of point blocks, with a running max.  # [Q]

    values(block) -> [Q, P]: one block's log terms (-inf where a term is zero)."""

    def add(carry, block):
        top, total = carry
        a = values(block)
        new_top = jnp.maximum(top, jnp.max(a, axis=1))
        shift = jnp.where(jnp.isfinite(new_top), new_top, 0.0)
        total = total * jnp.exp(top - shift) + jnp.sum(jnp.exp(a - shift[:, None]), axis=1)
        return (new_top, total), None

    init = (jnp.full((num_queries,), -jnp.inf, dtype), jnp.zeros((num_queries,), dtype))
    (top, total), _ = lax.scan(add, init, blocks)
    return jnp.log(total) + jnp.where(jnp.isfinite(top), top, 0.0)


@functools.partial(xla_cpu.jit, static_argnames=('query_chunk', 'point_chunk'))
def log_density(params, queries, query_chunk=4096, point_chunk=512):
    """log p(x) for queries [M] or [M, D], in [query_chunk, point_chunk] blocks: memory O(blocks).

    In whitened coordinates z = L^{-1} (x - c),
      -|z_q - z_p|^2 / 2 = z_q.z_p - |z_p|^2 / 2 - |z_q|^2 / 2,
    so each block is one matmul followed by a streaming logsumexp over the points.
    """
    points, chol = params['points'], params['kernel_cholesky']
    q = as_2d(queries).astype(points.dtype)
    center = jnp.mean(points, axis=0)  # shrinks |z| and with it the cancellation in the expansion
    whiten = lambda v: solve_triangular(chol, (v - center).T, lower=True).T
    zp = whiten(points)
    c = params['log_weights'] - 0.5 * jnp.sum(zp * zp, axis=1)
    point_chunk = min(point_chunk, points.shape[0])
    zp_blocks = chunks.to_chunks(zp, point_chunk)
    c_blocks = chunks.to_chunks(c, point_chunk, fill=-jnp.inf)  # padded points weigh nothing
    d = points.shape[1]
    log_norm = 0.5 * d * math.log(2 * math.pi) + jnp.sum(jnp.log(jnp.diagonal(chol)))

    def block(xq):
        zq = whiten(xq)
        lse = streaming_logsumexp(lambda b: zq @ b[0].T + b[1][None, :], (zp_blocks, c_blocks),
                                   zq.shape[0], zq.dtype)
        return lse - 0.5 * jnp.sum(zq * zq, axis=1)

    return chunks.map_rows(block, q, query_chunk) - log_norm


# Plain jit: XLA:CPU's YNN fusions (xla_cpu.jit) fail on its [21, D, D] batch of Cholesky factors.
@functools.partial(jax.jit, static_argnames=('holdout', 'max_holdout'))
def cv_factor(x, weights, rng, factors=None, holdout=0.2, max_holdout=2048):
    """The factor f with the highest weighted mean held-out log-likelihood, H = f^2 Cov_w(train)."""
    n, d = x.shape
    n_out = int(min(max(1, round(holdout * n)), max_holdout, n - 2))
    order = jax.random.permutation(rng, n)
    held, train = order[:n_out], order[n_out:]
    w_train = weights[train]
    if factors is None:
        factors = scott_factor(effective_size(w_train), d) * 2.0 ** jnp.linspace(-4.0, 1.0, 21)
    cov_chol = jnp.linalg.cholesky(data_covariance(x[train], w_train))
    w_held = weights[held] / jnp.sum(weights[held])

    def score(f):
        params = _params(x[train], w_train, f * cov_chol, f)
        return w_held @ log_density(params, x[held])

    scores = jax.vmap(score)(jnp.asarray(factors, x.dtype))
    return jnp.asarray(factors, x.dtype)[jnp.argmax(scores)]


@functools.partial(xla_cpu.jit, static_argnames=('num',))
def sample(params, rng, num):
    """x = x_i + L eps with i ~ Cat(w), eps ~ N(0, I).  # [num, D]"""
    index_key, noise_key = jax.random.split(rng)
    points, chol = params['points'], params['kernel_cholesky']
    n = points.shape[0]  # inverse-CDF draw: O(num log N), unlike Gumbel-max's O(num N)
    i = jax.random.choice(index_key, n, (num,), p=jnp.exp(params['log_weights']))
    return points[i] + jax.random.normal(noise_key, (num, points.shape[1]), points.dtype) @ chol.T
