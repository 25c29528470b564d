"""What the classical (fit) families share: flattening, an optional PCA projection with an isotropic
residual, and the family contract around a density estimator on the projected coordinates.

A family module supplies an `Estimator` (how to fit, evaluate and sample a density on rows z [N, k])
and delegates `fit`, `log_likelihood`, `evaluate`, `sample` and `figures` to this module. Images are
flattened to x [N, D] and centred on the training mean m. With model.pca_components = 0, z = x - m.
With k > 0, z = W^T (x - m) are the top-k principal coordinates (W [D, k]: orthonormal eigenvectors
of the training covariance) and the residual r = (x - m) - W z lives in the other D - k directions,
where it is modelled as N(0, s^2 I) with s^2 = E|r|^2 / (D - k), its maximum-likelihood variance
(Tipping & Bishop 1999, Eq. 15). (z, coordinates of r) is a rotation of x - m (unit Jacobian), so

    log p(x) = log p_est(z) - (D - k) / 2 log(2 pi s^2) - |r|^2 / (2 s^2)

is a normalised density on all of R^D, comparable with every other family's likelihood. With a
Gaussian estimator on z this is probabilistic PCA's maximum-likelihood solution.

Toy data (genmodels/data.py's `toy_<name>`: continuous points [N, D, 1, 1], D = 1 or 2) are fitted
as they are, without dequantisation, and drawn as densities against the toy's exact one.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmodels import config as config_lib, data as data_lib, metrics, viz
from genmodels.config import ConfigError

PyTree = Any
Config = ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class Estimator:
    """A density estimator on rows z [N, k]; its settings are in config.model.

    objectives: config.objective -> fit(config, z, rng) -> (params, metrics for metrics.jsonl)
    log_prob:   (config, params, z [N, k]) -> log p_est(z) [N], nats
    sample:     (config, params, rng, num) -> z [num, k]
    """
    name: str  # in figure titles
    objectives: dict[str, Callable[..., tuple[PyTree, dict[str, float]]]]
    log_prob: Callable[..., jax.Array]
    sample: Callable[..., jax.Array]


def check_config(config: Config) -> None:
    if not data_lib.is_toy(config.data.name) and not config.data.dequantize:
        raise ConfigError(f'the {config.family} family is a density on continuous data: set '
                          'data.dequantize=True for a likelihood of the discrete pixels.')
    if config.model.pca_components < 0:
        raise ConfigError(f'model.pca_components must be >= 0 (0: no projection), got '
                          f'{config.model.pca_components}.')


def pca(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Top-k principal directions W [D, k] of centred rows x [N, D], and the residual variance s^2
    = sum_n |x_n - W W^T x_n|^2 / (N (D - k)) (its MLE; NaN when k = D)."""
    n, d = x.shape
    _, vectors = jnp.linalg.eigh(x.T @ x / n)  # eigenvalues in ascending order
    w = vectors[:, ::-1][:, :k]
    r = x - (x @ w) @ w.T  # the residual itself, not trace minus kept eigenvalues: no cancellation
    return w, jnp.sum(r * r) / (n * (d - k)) if k < d else jnp.asarray(jnp.nan)


def project(params: PyTree, images: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """Images [N, H, W, C] -> (z [N, k], |r|^2 [N], or None without a residual)."""
    x = images.reshape(images.shape[0], -1) - params['mean'].reshape(-1)
    if 'components' not in params:
        return x, None
    z = x @ params['components']
    r = x - z @ params['components'].T
    return z, jnp.sum(r * r, axis=1)


def unproject(params: PyTree, z: jax.Array) -> jax.Array:
    """m + W z (m + z without a projection): z [N, k] -> images [N, H, W, C]."""
    x = z @ params['components'].T if 'components' in params else z
    return (x + params['mean'].reshape(-1)).reshape((z.shape[0],) + params['mean'].shape)


def fit(config: Config, data: dict[str, np.ndarray], rng: jax.Array, estimator: Estimator
        ) -> tuple[PyTree, dict[str, float]]:
    """params = {'mean': m [H, W, C], 'estimator': ..., with PCA also 'components': W [D, k] and,
    if k < D, 'residual_var': s^2}; and the estimator's fit metrics."""
    images = jnp.asarray(data['image'])
    mean = jnp.mean(images, axis=0)
    x = images.reshape(images.shape[0], -1) - mean.reshape(-1)  # [N, D]
    params = {'mean': mean}
    k, d = config.model.pca_components, x.shape[1]
    if k > d:
        raise ValueError(f'model.pca_components={k} exceeds the {d} dimensions of '
                         f'{config.data.name}; use at most {d} (0: no projection).')
    if k:
        params['components'], residual_var = pca(x, k)
        if k < d:
            params['residual_var'] = residual_var
        x = x @ params['components']
    fit_rule = config_lib.objective(estimator.objectives, config.objective)
    params['estimator'], fit_metrics = fit_rule(config, x, rng)
    return params, fit_metrics


def log_likelihood(config: Config, params: PyTree, images: jax.Array, estimator: Estimator
                   ) -> jax.Array:
    """log p(x) per image [N] in nats: the density on continuous data of the module docstring."""
    z, r2 = project(params, images)
    log_p = estimator.log_prob(config, params['estimator'], z)
    if 'residual_var' in params:
        s2, dims = params['residual_var'], params['mean'].size - z.shape[1]
        log_p = log_p - 0.5 * dims * jnp.log(2 * math.pi * s2) - 0.5 * r2 / s2
    return log_p


def evaluate(config: Config, params: PyTree, data: dict[str, np.ndarray], estimator: Estimator
             ) -> dict[str, float]:
    """Exact NLL of `data` in nats per example and bits/dim, corrected to the discrete pixels."""
    fn = jax.jit(lambda p, x: log_likelihood(config, p, x, estimator))
    log_p = data_lib.map_batches(lambda b: fn(params, b['image']), data, config.eval.batch_size)
    dims = int(np.prod(data['image'].shape[1:]))
    return metrics.likelihood_record(-float(np.mean(log_p)), dims,
                                     data_lib.preprocessing(config.data), prefix='nll')


def sample(config: Config, params: PyTree, rng: jax.Array, num: int, estimator: Estimator
           ) -> jax.Array:
    """x = m + W z + s (I - W W^T) eps, z ~ p_est, eps ~ N(0, I_D): an exact draw from p(x), clipped
    to the images' value range (toy data: not clipped): [num, H, W, C]."""
    z_key, noise_key = jax.random.split(rng)
    x = unproject(params, estimator.sample(config, params['estimator'], z_key, num))
    if 'residual_var' in params:
        w = params['components']
        eps = jax.random.normal(noise_key, (num, w.shape[0]), w.dtype)
        noise = jnp.sqrt(params['residual_var']) * (eps - (eps @ w) @ w.T)
        x = x + noise.reshape(x.shape)
    bounds = data_lib.value_range(config.data)
    return x if bounds is None else jnp.clip(x, *bounds)


def figures(config: Config, params: PyTree, data: dict[str, np.ndarray], rng: jax.Array,
            out_dir: str, estimator: Estimator) -> list[str]:
    """samples.png; with PCA also pca_samples.png: new images m + W z from z ~ p_est, without the
    residual noise (scikit-learn's KDE digits demo). Toy data: `toy_figures`."""
    if data_lib.is_toy(config.data.name):
        return toy_figures(config, params, rng, out_dir, estimator)
    lo, hi = data_lib.value_range(config.data)
    sample_key, z_key = jax.random.split(rng)
    paths = viz.save_samples(config.data, sample(config, params, sample_key, 64, estimator),
                             f'{out_dir}/samples.png', f'{estimator.name} samples')
    if 'components' in params:
        k = params['components'].shape[1]
        z = estimator.sample(config, params['estimator'], z_key, 48)
        new = np.clip(np.asarray(unproject(params, z)), lo, hi)
        paths.append(viz.save_rows(
            [data['image'][:16], new[:16], new[16:32], new[32:]], f'{out_dir}/pca_samples.png',
            ['data', f'new: {estimator.name} in the {k}-dim PCA space, mapped back by m + W z',
             '', ''], lo, hi))
    return paths


def toy_figures(config: Config, params: PyTree, rng: jax.Array, out_dir: str,
                estimator: Estimator) -> list[str]:
    """density.png: 1D, a histogram of the train points under the fitted and the true density; 2D,
    the fitted log-density with 500 samples beside the true log-density."""
    dist = data_lib.toy_distribution(config.data.name)
    train = data_lib.load_split(config.data, config.data.train_split)['image']
    train = train.reshape(len(train), dist.dim)  # [N, D]
    log_q = jax.jit(lambda points: log_likelihood(
        config, params, points.reshape(len(points), dist.dim, 1, 1), estimator))
    path = f'{out_dir}/density.png'
    if dist.dim == 1:
        grid = np.linspace(train.min() - 0.5, train.max() + 0.5, 600, dtype=np.float32)
        return [viz.save_histogram(train[:, 0], grid, {estimator.name: np.exp(log_q(grid))}, path,
                                   f'{dist.name}: {estimator.name} and the true density',
                                   truth=np.exp(np.asarray(dist.log_prob(grid))))]
    return viz.save_samples(config.data, sample(config, params, rng, 500, estimator), path,
                            f'{estimator.name} log-density, with 500 samples', reference=train,
                            log_density=log_q)


def contract(estimator: Estimator):
    """The family contract bound to one estimator, for a family module to export:

        fit, log_likelihood, evaluate, sample, figures = density.contract(ESTIMATOR)
    """
    def fit_(config, data, rng):
        return fit(config, data, rng, estimator)

    def log_likelihood_(config, params, batch, rng):
        return log_likelihood(config, params, batch['image'], estimator)

    def evaluate_(config, params, data, rng):
        return evaluate(config, params, data, estimator)

    def sample_(config, params, rng, num, labels=None):
        return sample(config, params, rng, num, estimator)

    def figures_(config, params, data, rng, out_dir):
        return figures(config, params, data, rng, out_dir, estimator)

    return fit_, log_likelihood_, evaluate_, sample_, figures_
