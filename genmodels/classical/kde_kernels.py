"""Kernel density estimates with scikit-learn's kernels and metrics, exact, in blocks.

  p(x) = sum_i w_i K(d(x, x_i) / h) / Z(h, D),  sum_i w_i = 1

K is one of KERNELS on u = d / h (gaussian exp(-u^2 / 2), tophat 1[u < 1], epanechnikov
(1 - u^2) 1[u < 1], exponential exp(-u), linear (1 - u) 1[u < 1], cosine cos(pi u / 2) 1[u < 1]),
d one of METRICS, and Z the integral of K(|x| / h) over R^D: scikit-learn's `kernel_norm`, which
it applies whatever the metric (so only the euclidean density integrates to 1, there as here).
One exception: scikit-learn's cosine norm is right for odd D only (1/Z = 0.25 for D = 2 where
the exact value is 0.688, 0.004 for D = 6 against 0.892, NaN for D = 4 and 8); here Z is the
exact integral for every D, equal to scikit-learn's for odd D (to 1e-11).
Each block of queries scans over blocks of points with a streaming logsumexp (kde.py), so memory
stays O(block) and a zero density is log p = -inf, as scikit-learn returns it.
The Gaussian kernel with the euclidean metric has a faster path in kde.py (one matmul per block).
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import gammainc

from genmodels import xla_cpu
from genmodels.classical import chunks, kmeans
from genmodels.classical.kde import as_2d, streaming_logsumexp

KERNELS = ('gaussian', 'tophat', 'epanechnikov', 'exponential', 'linear', 'cosine')
METRICS = ('euclidean', 'manhattan', 'chebyshev', 'minkowski', 'haversine')
ALIASES = {'l2': 'euclidean', 'l1': 'manhattan', 'cityblock': 'manhattan',
           'infinity': 'chebyshev', 'p': 'minkowski'}
SAMPLED = ('gaussian', 'tophat')  # the kernels scikit-learn's KernelDensity.sample draws from


def _log_ball_volume(n: int) -> float:
    """log volume of the unit ball in R^n."""
    return 0.5 * n * math.log(math.pi) - math.lgamma(0.5 * n + 1)


def _log_sphere_area(n: int) -> float:
    """log area of the unit n-sphere (the boundary of the unit ball in R^(n+1))."""
    return math.log(2 * math.pi) + _log_ball_volume(n - 1)


def _cosine_radial_integral(d: int, terms: int = 60) -> float:
    """integral_0^1 cos(pi r / 2) r^(d-1) dr = sum_k (-1)^k (pi/2)^(2k+1) Gamma(d) / Gamma(d+2k+2):
    with s = 1 - r, cos(pi r / 2) = sin(pi s / 2) expanded in powers of s, each term a Beta
    integral. The terms alternate and shrink fast, for d = 1 as for d = 784."""
    total = 0.0
    for k in range(terms):
        total += (-1) ** k * math.exp((2 * k + 1) * math.log(math.pi / 2) + math.lgamma(d)
                                      - math.lgamma(d + 2 * k + 2))
    return total


def log_kernel_norm(h: float, d: int, kernel: str) -> float:
    """-log Z: Z = integral over R^d of K(|x| / h) dx = h^d times the unit-width integral."""
    if kernel == 'gaussian':
        log_z = 0.5 * d * math.log(2 * math.pi)
    elif kernel == 'tophat':
        log_z = _log_ball_volume(d)
    elif kernel == 'epanechnikov':  # integral of (1 - r^2) over the ball: V_d 2 / (d + 2)
        log_z = _log_ball_volume(d) + math.log(2.0 / (d + 2.0))
    elif kernel == 'exponential':  # S_(d-1) Gamma(d)
        log_z = _log_sphere_area(d - 1) + math.lgamma(d)
    elif kernel == 'linear':  # V_d / (d + 1)
        log_z = _log_ball_volume(d) - math.log(d + 1.0)
    elif kernel == 'cosine':  # S_(d-1) integral_0^1 cos(pi r / 2) r^(d-1) dr
        log_z = _log_sphere_area(d - 1) + math.log(_cosine_radial_integral(d))
    else:
        raise ValueError(f'kernel={kernel!r}; expected one of {KERNELS}.')
    return -(log_z + d * math.log(h))


def log_kernel(u, kernel: str):
    """log K(u) for scaled distances u >= 0 (-inf outside a compact kernel's support)."""
    inside = u < 1
    if kernel == 'gaussian':
        return -0.5 * u * u
    if kernel == 'exponential':
        return -u
    if kernel == 'tophat':
        return jnp.where(inside, 0.0, -jnp.inf).astype(u.dtype)
    value = {'epanechnikov': lambda: 1 - u * u, 'linear': lambda: 1 - u,
             'cosine': lambda: jnp.cos(0.5 * math.pi * u)}[kernel]()
    return jnp.where(inside, jnp.log(jnp.where(inside, value, 1.0)), -jnp.inf)


def canonical_metric(metric: str, metric_params: dict | None) -> tuple[str, float]:
    """(one of METRICS, the Minkowski power p) for scikit-learn's metric names and params."""
    name = ALIASES.get(metric, metric)
    if name not in METRICS:
        raise ValueError(f'metric={metric!r}; expected one of {METRICS + tuple(ALIASES)}.')
    params = dict(metric_params or {})
    p = float(params.pop('p', 2.0))
    if params:
        raise ValueError(f'metric_params {sorted(params)} are not supported; only p (minkowski).')
    if name == 'minkowski':
        if not p >= 1:
            raise ValueError(f'minkowski needs p >= 1, got p={p}.')
        name = {1.0: 'manhattan', 2.0: 'euclidean', math.inf: 'chebyshev'}.get(p, name)
    return name, p


def distances(queries, points, metric: str, p: float = 2.0):
    """[Q, P] distances between rows. haversine: rows are (latitude, longitude) in radians."""
    if metric == 'haversine':
        lat_q, lon_q = queries[:, None, 0], queries[:, None, 1]
        lat_p, lon_p = points[None, :, 0], points[None, :, 1]
        a = (jnp.sin(0.5 * (lat_q - lat_p)) ** 2
             + jnp.cos(lat_q) * jnp.cos(lat_p) * jnp.sin(0.5 * (lon_q - lon_p)) ** 2)
        return 2 * jnp.arcsin(jnp.sqrt(jnp.clip(a, 0.0, 1.0)))
    if metric == 'euclidean':  # one matmul, no [Q, P, D] differences
        return jnp.sqrt(kmeans.squared_distances(queries, points))
    diff = jnp.abs(queries[:, None, :] - points[None, :, :])
    if metric == 'manhattan':
        return jnp.sum(diff, axis=-1)
    if metric == 'chebyshev':
        return jnp.max(diff, axis=-1)
    return jnp.sum(diff ** p, axis=-1) ** (1.0 / p)


@functools.partial(xla_cpu.jit, static_argnames=('kernel', 'metric', 'query_chunk', 'point_chunk'))
def log_density(points, log_weights, bandwidth, queries, kernel: str = 'gaussian',
                metric: str = 'euclidean', p: float = 2.0, query_chunk: int = 512,
                point_chunk: int = 256):
    """log p(x) for queries [M, D] under the estimate on points [N, D] with normalised
    log-weights [N] and bandwidth h (module docstring).  # [M]"""
    q = as_2d(queries).astype(points.dtype)
    point_chunk = min(point_chunk, points.shape[0])
    if metric == 'euclidean':  # distances by |q|^2 + |x|^2 - 2 q.x: about the points' mean, the
        center = jnp.mean(points, axis=0)  # cancellation stays small
        points, q = points - center, q - center
    blocks = (chunks.to_chunks(points, point_chunk),
              chunks.to_chunks(log_weights, point_chunk, fill=-jnp.inf))  # padding weighs 0
    p = jnp.asarray(p, points.dtype)

    def block(xq):
        def values(b):
            return b[1][None, :] + log_kernel(distances(xq, b[0], metric, p) / bandwidth, kernel)
        return streaming_logsumexp(values, blocks, xq.shape[0], xq.dtype)

    log_norm = log_kernel_norm(1.0, points.shape[1], kernel) - points.shape[1] * jnp.log(bandwidth)
    return chunks.map_rows(block, q, query_chunk) + log_norm


@functools.partial(xla_cpu.jit, static_argnames=('kernel', 'num'))
def sample(points, weights, bandwidth, rng, num: int, kernel: str = 'gaussian'):
    """num draws [num, D]: a point chosen with probability proportional to its weight (inverse
    CDF of one uniform, as scikit-learn draws it, so integer weights sample as repeated rows),
    plus kernel noise: h N(0, I) (gaussian) or uniform in the ball of radius h (tophat)."""
    if kernel not in SAMPLED:
        raise NotImplementedError(f'sampling is implemented for the kernels {SAMPLED}, '
                                  f'not {kernel!r} (as in scikit-learn).')
    index_key, noise_key = jax.random.split(rng)
    cumulative = jnp.cumsum(weights)
    u = jax.random.uniform(index_key, (num,), weights.dtype)
    i = jnp.minimum(jnp.searchsorted(cumulative, u * cumulative[-1]), points.shape[0] - 1)
    x = jax.random.normal(noise_key, (num, points.shape[1]), points.dtype)
    if kernel == 'gaussian':
        return points[i] + bandwidth * x
    # tophat: a Gaussian direction, radius r with P(r < s) = (s / h)^D
    s_sq = jnp.sum(x * x, axis=1)
    radius = gammainc(0.5 * points.shape[1], 0.5 * s_sq) ** (1.0 / points.shape[1]) * bandwidth
    return points[i] + x * (radius / jnp.sqrt(s_sq))[:, None]
