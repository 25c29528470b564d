"""Toy distributions: densities integrate to one, quadrature is converged, samples follow them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genmodels.data import toy

# name -> (grid half-width, midpoint-rule step): the step is at most half the narrowest noise scale,
# where the midpoint rule on a Gaussian is exact to far below the tolerance.
GRIDS = {'bumps_1d': (7.0, 0.1), 'grid_25': (5.0, 0.025), 'grid_100': (10.0, 0.025),
         'ring_8': (2.5, 0.01), 'two_moons': (2.5, 0.05), 'swiss_roll': (4.0, 0.1),
         'eight_gaussians': (10.0, 0.25), 'moons_cfm': (10.0, 0.2)}


def grid(name):
    half, step = GRIDS[name]
    axis = np.arange(-half, half, step) + step / 2
    if toy.get(name).dim == 1:
        return axis[:, None], step
    return np.stack(np.meshgrid(axis, axis, indexing='ij'), -1).reshape(-1, 2), step ** 2


@pytest.mark.parametrize('name', sorted(toy.TOYS))
def test_density_integrates_to_one_and_samples_follow_it(name):
    dist = toy.get(name)
    points, cell = grid(name)
    with jax.enable_x64(True):
        density = np.exp(np.concatenate(
            [np.asarray(dist.log_prob(jnp.asarray(p))) for p in np.array_split(points, 8)]))
    assert abs(density.sum() * cell - 1.0) < 1e-6
    mass = density * cell
    mean = mass @ points
    cov = (points - mean).T @ ((points - mean) * mass[:, None])
    samples = np.asarray(dist.sample(jax.random.key(0), 100_000))
    assert samples.shape == (100_000, dist.dim)
    scale = np.sqrt(np.diag(cov)).max()
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.02 * scale)
    np.testing.assert_allclose(np.cov(samples.T).reshape(cov.shape), cov, atol=0.03 * scale ** 2)
    log_p = np.asarray(dist.log_prob(jnp.asarray(samples[:2000])))
    assert np.all(np.isfinite(log_p))


def test_histogram_of_samples_matches_the_density():
    dist = toy.get('two_moons')
    samples = np.asarray(dist.sample(jax.random.key(1), 200_000))
    edges = np.linspace(-2.5, 2.5, 21)
    hist, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], bins=[edges, edges])
    points, cell = grid('two_moons')  # 100 x 100 fine cells -> 20 x 20 coarse bins
    density = np.exp(np.asarray(dist.log_prob(jnp.asarray(points)))) * cell
    expected = density.reshape(20, 5, 20, 5).sum(axis=(1, 3))
    assert 0.5 * np.abs(hist / len(samples) - expected).sum() < 0.01  # total variation


@pytest.mark.parametrize('name', ['two_moons', 'swiss_roll'])
def test_curve_quadrature_is_converged(name):
    builder = {'two_moons': toy.two_moons, 'swiss_roll': toy.swiss_roll}[name]
    coarse, fine = builder(), builder(panels=2 * {'two_moons': 64, 'swiss_roll': 256}[name])
    points = np.asarray(coarse.sample(jax.random.key(2), 500)) * 1.3  # on and off the curve
    with jax.enable_x64(True):
        points = jnp.asarray(points)
        np.testing.assert_allclose(coarse.log_prob(points), fine.log_prob(points), rtol=1e-7,
                                   atol=1e-7)
