"""Toy 1D/2D distributions with exact log-densities and samplers, in pure jax.

Each toy is a `Toy(name, dim, log_prob, sample)`: `log_prob(x [N, dim]) -> [N]` (a 1D toy also takes
x [N]), `sample(rng, num) -> [num, dim]`. `get(name)` returns the default-parameter toy from TOYS:

  bumps_1d    1D mixture of three Gaussian bumps
  grid_25     2D grid of 25 Gaussians, means {-4, -2, 0, 2, 4}^2, std 0.05
  grid_100    2D grid of 100 Gaussians, means {-9, -7, ..., 9}^2, std 0.05 (same spacing)
  ring_8      2D ring of 8 Gaussians, radius 2, std 0.02
  two_moons   the two half circles of scikit-learn's make_moons plus N(0, 0.1^2 I) noise
  swiss_roll  the 2D spiral (t cos t, t sin t) / 5, t ~ U[1.5 pi, 4.5 pi], plus N(0, 0.2^2 I) noise
  eight_gaussians  8 Gaussians at radius 5, std 0.1^(1/4): the source of TorchCFM's 2D benchmark
  moons_cfm   its target: two_moons with noise 0.2, scaled by 3 and shifted by -1

two_moons and swiss_roll are defined as noisy curves, x = c(t) + sigma eps with t uniform on its
interval, so p(x) = E_t[N(x; c(t), sigma^2 I)]: the uniform parameter convolved with Gaussian
noise (uniform in t, which for the spiral is not uniform in arc length). That one-dimensional
integral has no closed form; it is computed by composite Gauss-Legendre quadrature in log space
with panels shorter than sigma along the curve, exact to about float precision (tests/test_toy.py
checks it against a quadrature twice as fine).
"""

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Toy:
    name: str
    dim: int
    log_prob: Callable  # x [N, dim] -> [N]
    sample: Callable  # (rng, num) -> [num, dim]
    modes: np.ndarray | None = None       # [K, dim] component means of a Gaussian mixture
    mode_stds: np.ndarray | None = None   # [K] their standard deviations


def _rows(x, dim):
    x = jnp.asarray(x)
    return x[:, None] if x.ndim == 1 and dim == 1 else x


def gaussian_mixture(name, weights, means, stds):
    """Mixture of isotropic Gaussians: p(x) = sum_k a_k N(x; mu_k, s_k^2 I)."""
    weights, means, stds = (np.asarray(v, np.float64) for v in (weights, means, stds))
    dim = means.shape[1]
    # float32, or float64 under jax_enable_x64, decided at trace time
    constants = lambda: tuple(jnp.asarray(v, float) for v in (weights, means, stds))

    def log_prob(x):
        a, mu, s = constants()
        x = _rows(x, dim)
        sq = jnp.sum((x[:, None, :] - mu) ** 2, axis=-1)  # [N, K]
        log_comp = -0.5 * sq / s ** 2 - dim * jnp.log(s) - 0.5 * dim * math.log(2 * math.pi)
        return jax.nn.logsumexp(log_comp + jnp.log(a), axis=1)

    def sample(rng, num):
        a, mu, s = constants()
        label_key, noise_key = jax.random.split(rng)
        z = jax.random.categorical(label_key, jnp.log(a), shape=(num,))
        return mu[z] + s[z][:, None] * jax.random.normal(noise_key, (num, dim), mu.dtype)

    return Toy(name, dim, jax.jit(log_prob), jax.jit(sample, static_argnums=1), means, stds)


def noisy_curves(name, curves, t0, t1, noise, panels, order=8):
    """Equal mixture over `curves` of x = c(t) + noise * eps, t ~ U[t0, t1], eps ~ N(0, I) in 2D;
    a curve is c(t, xp) -> [T, 2] for xp = numpy or jax.numpy.

    p(x) = 1/M sum_m 1/(t1 - t0) int N(x; c_m(t), noise^2 I) dt, by `panels` x `order`-point
    Gauss-Legendre quadrature.
    """
    nodes, weights = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(t0, t1, panels + 1)
    half = 0.5 * np.diff(edges)[:, None]
    t = ((edges[:-1, None] + edges[1:, None]) / 2 + half * nodes).ravel()  # [panels * order]
    log_w = np.tile(np.log((half * weights).ravel() / (t1 - t0) / len(curves)), len(curves))
    centers = np.concatenate([c(t, np) for c in curves])  # [M * T, 2], numpy: no jax work at import

    def log_prob(x):
        diff = jnp.asarray(x)[:, None, :] - jnp.asarray(centers, float)
        sq = jnp.sum(diff ** 2, axis=-1)  # [N, M * T]
        log_kernel = -0.5 * sq / noise ** 2 - 2 * math.log(noise) - math.log(2 * math.pi)
        return jax.nn.logsumexp(log_kernel + jnp.asarray(log_w, float), axis=1)

    def sample(rng, num):
        curve_key, t_key, noise_key = jax.random.split(rng, 3)
        m = jax.random.randint(curve_key, (num,), 0, len(curves))
        ts = jax.random.uniform(t_key, (num,), minval=t0, maxval=t1)
        on_curve = jnp.stack([c(ts, jnp) for c in curves])[m, jnp.arange(num)]
        return on_curve + noise * jax.random.normal(noise_key, (num, 2), on_curve.dtype)

    return Toy(name, 2, jax.jit(log_prob), jax.jit(sample, static_argnums=1))


def bumps_1d():
    return gaussian_mixture('bumps_1d', [0.3, 0.5, 0.2], [[-2.0], [0.0], [2.5]], [0.3, 0.6, 0.4])


def grid(side_count: int, spacing=2.0, std=0.05):
    """side_count^2 Gaussians on a square grid centred at 0 (grid_25: means {-4, ..., 4}^2)."""
    side = spacing * (np.arange(side_count) - (side_count - 1) / 2)
    means = np.stack(np.meshgrid(side, side, indexing='ij'), -1).reshape(-1, 2)
    k = side_count ** 2
    return gaussian_mixture(f'grid_{k}', np.full(k, 1 / k), means, np.full(k, std))


def ring_8(radius=2.0, std=0.02):
    angles = 2 * np.pi * np.arange(8) / 8
    means = radius * np.stack([np.cos(angles), np.sin(angles)], -1)
    return gaussian_mixture('ring_8', np.full(8, 1 / 8), means, np.full(8, std))


def eight_gaussians(radius=5.0, std=0.1 ** 0.25):
    """TorchCFM's 2D benchmark source: 8 Gaussians at radius 5, covariance sqrt(0.1) I."""
    angles = 2 * np.pi * np.arange(8) / 8
    means = radius * np.stack([np.cos(angles), np.sin(angles)], -1)
    return gaussian_mixture('eight_gaussians', np.full(8, 1 / 8), means, np.full(8, std))


def two_moons(noise=0.1, panels=64, scale=1.0, shift=0.0, name='two_moons'):
    """make_moons' half circles plus N(0, noise^2 I), then x -> scale x + shift."""
    outer = lambda t, xp: scale * xp.stack([xp.cos(t), xp.sin(t)], -1) + shift
    inner = lambda t, xp: scale * xp.stack([1 - xp.cos(t), 0.5 - xp.sin(t)], -1) + shift
    return noisy_curves(name, [outer, inner], 0.0, math.pi, scale * noise, panels)


def swiss_roll(noise=0.2, panels=256):
    spiral = lambda t, xp: xp.stack([t * xp.cos(t), t * xp.sin(t)], -1) / 5.0
    return noisy_curves('swiss_roll', [spiral], 1.5 * math.pi, 4.5 * math.pi, noise, panels)


TOYS = {toy.name: toy for toy in (
    bumps_1d(), grid(5), grid(10), ring_8(), two_moons(), swiss_roll(), eight_gaussians(),
    # TorchCFM's 2D benchmark target: make_moons with noise 0.2, times 3 minus 1
    two_moons(noise=0.2, scale=3.0, shift=-1.0, name='moons_cfm'))}


def get(name):
    if name not in TOYS:
        raise ValueError(f'Unknown toy distribution {name!r}; expected one of {sorted(TOYS)}.')
    return TOYS[name]
