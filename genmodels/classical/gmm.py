"""Gaussian mixture densities: log-densities, responsibilities, sampling, BIC/AIC.

`params` is a plain dict of arrays (checkpointable as is); `covariance_type` travels beside it:

  weights [K]  means [K, D]  covariances / precisions_cholesky, by covariance type:
    full [K, D, D]   tied [D, D]   diag [K, D]   spherical [K]

As in scikit-learn, precisions_cholesky is U with U U^T = Sigma^{-1}: the upper-triangular
inverse-transpose of Sigma's Cholesky factor (full, tied), or 1 / sigma (diag, spherical).
Fitting by EM is in `em.py`.
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from genmodels import xla_cpu
from genmodels.classical import chunks

COVARIANCE_TYPES = ('full', 'tied', 'diag', 'spherical')


def check_covariance_type(covariance_type):
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f'covariance_type={covariance_type!r}; expected one of {COVARIANCE_TYPES}.')


def default_chunk_size(k, d):
    """Rows per block of the scan over the data: the [K, D, rows] whitened block holds about 2^18
    values on CPU (1 MiB in float32, one core's L2 cache here) and 2^21 elsewhere, within
    [512, 16384] rows. On CPU, blocks that stay in cache halved the time of an EM iteration against
    8 MiB blocks (`python -m benchmarks.bench_em --blocks`; docs/benchmarks.md)."""
    values = 2 ** 18 if jax.default_backend() == 'cpu' else 2 ** 21
    return int(min(16384, max(512, values // (k * d))))


def precisions_cholesky(covariances, covariance_type):
    """Sigma = L L^T -> U = L^{-T}, so U U^T = Sigma^{-1}; NaN unless Sigma is positive definite."""
    if covariance_type in ('full', 'tied'):
        chol = jnp.linalg.cholesky(covariances)
        eye = jnp.broadcast_to(jnp.eye(chol.shape[-1], dtype=chol.dtype), chol.shape)
        return jnp.swapaxes(solve_triangular(chol, eye, lower=True), -1, -2)
    return jax.lax.rsqrt(covariances)


def covariances_cholesky(precisions_chol, covariance_type):
    """L with Sigma = L L^T, from U: L = U^{-T} (full, tied) or sigma = 1 / U (diag, spherical)."""
    if covariance_type in ('full', 'tied'):
        eye = jnp.broadcast_to(jnp.eye(precisions_chol.shape[-1], dtype=precisions_chol.dtype),
                               precisions_chol.shape)
        return jnp.swapaxes(solve_triangular(precisions_chol, eye, lower=False), -1, -2)
    return 1.0 / precisions_chol


def precisions_cholesky_from_precisions(precisions, covariance_type):
    """Upper-triangular U with U U^T = P: reverse rows and columns, Cholesky, reverse back."""
    if covariance_type in ('full', 'tied'):
        flip = lambda a: a[..., ::-1, ::-1]
        return flip(jnp.linalg.cholesky(flip(precisions)))
    return jnp.sqrt(precisions)


def precisions(precisions_chol, covariance_type):
    """P = U U^T (full, tied) or 1 / sigma^2 (diag, spherical)."""
    if covariance_type in ('full', 'tied'):
        return precisions_chol @ jnp.swapaxes(precisions_chol, -1, -2)
    return precisions_chol ** 2


def log_det_cholesky(precisions_chol, covariance_type, d):
    """log|U| = -1/2 log|Sigma|.  # [K], or a scalar for tied"""
    if covariance_type in ('full', 'tied'):
        return jnp.sum(jnp.log(jnp.diagonal(precisions_chol, axis1=-2, axis2=-1)), axis=-1)
    if covariance_type == 'diag':
        return jnp.sum(jnp.log(precisions_chol), axis=-1)
    return d * jnp.log(precisions_chol)


def whiten(x, means, precisions_chol, covariance_type):
    """y_k = U_k^T (x - mu_k), so that (x - mu_k)^T Sigma_k^{-1} (x - mu_k) = |y_k|^2.

    x [C, D] -> y [K, D, C]. For full covariances all K products are one [K*D, D] @ [D, C] matmul.
    """
    k, d = means.shape
    if covariance_type == 'full':
        stacked = jnp.swapaxes(precisions_chol, 1, 2).reshape(k * d, d)  # row (k, e): U_k[:, e]
        shift = jnp.einsum('kde,kd->ke', precisions_chol, means)
        return (stacked @ x.T).reshape(k, d, -1) - shift[:, :, None]
    if covariance_type == 'tied':
        return (x @ precisions_chol).T[None] - (means @ precisions_chol)[:, :, None]
    scale = (precisions_chol[:, :, None] if covariance_type == 'diag'
             else precisions_chol[:, None, None])
    return scale * (x.T[None] - means[:, :, None])


def log_prob_whitened(y, params, covariance_type):
    """log a_k + log N(x; mu_k, Sigma_k) = log a_k - D/2 log 2pi + log|U_k| - |y_k|^2/2. [K, C]"""
    d = y.shape[1]
    log_det = log_det_cholesky(params['precisions_cholesky'], covariance_type, d)
    const = jnp.log(params['weights']) + log_det - 0.5 * d * math.log(2 * math.pi)
    return jnp.reshape(const, (-1, 1)) - 0.5 * jnp.sum(y * y, axis=1)


@functools.partial(xla_cpu.jit, fusions=xla_cpu.DOT_FUSIONS,
                   static_argnames=('covariance_type', 'chunk_size'))
def weighted_log_prob(params, x, covariance_type, chunk_size=None):
    """log a_k + log N(x_n; mu_k, Sigma_k), evaluated in row blocks.  # [N, K]"""
    k, d = params['means'].shape
    chunk = chunk_size or default_chunk_size(k, d)

    def block(xc):
        y = whiten(xc, params['means'], params['precisions_cholesky'], covariance_type)
        return log_prob_whitened(y, params, covariance_type).T

    return chunks.map_rows(block, x, chunk)


@functools.partial(xla_cpu.jit, fusions=xla_cpu.DOT_FUSIONS,
                   static_argnames=('covariance_type', 'chunk_size'))
def log_prob(params, x, covariance_type, chunk_size=None):
    """log p(x_n) = logsumexp_k [log a_k + log N(x_n; mu_k, Sigma_k)].  # [N]"""
    return jax.nn.logsumexp(weighted_log_prob(params, x, covariance_type, chunk_size), axis=1)


@functools.partial(xla_cpu.jit, fusions=xla_cpu.DOT_FUSIONS,
                   static_argnames=('covariance_type', 'chunk_size'))
def responsibilities(params, x, covariance_type, chunk_size=None):
    """r_nk = a_k N(x_n; mu_k, S_k) / sum_i a_i N(x_n; mu_i, S_i), from log space.  # [N, K]"""
    return jax.nn.softmax(weighted_log_prob(params, x, covariance_type, chunk_size), axis=1)


def n_parameters(covariance_type, k, d):
    """Free parameters: K - 1 weights, K D means, and the covariances."""
    cov = {'full': k * d * (d + 1) / 2, 'tied': d * (d + 1) / 2, 'diag': k * d, 'spherical': k}
    return int(cov[covariance_type] + k * d + k - 1)


@functools.partial(jax.jit, static_argnames=('covariance_type',))
def bic(params, x, covariance_type):
    """Bayesian information criterion -2 log L + p log N (Schwarz 1978); lower is better."""
    k, d = params['means'].shape
    log_lik = jnp.sum(log_prob(params, x, covariance_type))
    return -2.0 * log_lik + n_parameters(covariance_type, k, d) * math.log(x.shape[0])


@functools.partial(jax.jit, static_argnames=('covariance_type',))
def aic(params, x, covariance_type):
    """Akaike information criterion -2 log L + 2 p (Akaike 1974); lower is better."""
    k, d = params['means'].shape
    log_lik = jnp.sum(log_prob(params, x, covariance_type))
    return -2.0 * log_lik + 2.0 * n_parameters(covariance_type, k, d)


@functools.partial(jax.jit, static_argnames=('num', 'covariance_type'))
def sample(params, rng, num, covariance_type):
    """z ~ Cat(a), x = mu_z + L_z eps with eps ~ N(0, I). Returns (x [num, D], z [num])."""
    label_key, noise_key = jax.random.split(rng)
    means = params['means']
    z = jax.random.categorical(label_key, jnp.log(params['weights']), shape=(num,))
    eps = jax.random.normal(noise_key, (num, means.shape[1]), means.dtype)
    cov = params['covariances']
    if covariance_type == 'full':
        noise = jnp.einsum('nde,ne->nd', jnp.linalg.cholesky(cov)[z], eps)
    elif covariance_type == 'tied':
        noise = eps @ jnp.linalg.cholesky(cov).T
    elif covariance_type == 'diag':
        noise = jnp.sqrt(cov[z]) * eps
    else:
        noise = jnp.sqrt(cov[z])[:, None] * eps
    return means[z] + noise, z
