"""Closed-form Gaussian maximum likelihood against numpy, SciPy and scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from sklearn.covariance import EmpiricalCovariance

from genmodels.classical import GaussianMLE, gaussian


@pytest.mark.parametrize('weighted', [False, True])
def test_mle_is_the_weighted_mean_and_biased_covariance(weighted):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4)) + 5.0
    w = rng.uniform(0.0, 3.0, 500) if weighted else np.ones(500)
    with jax.enable_x64(True):
        params = gaussian.fit(jnp.asarray(x), jnp.asarray(w) if weighted else None)
        flat = gaussian.fit(jnp.asarray(x[:, 0]), jnp.asarray(w) if weighted else None)
    mean = np.sum(w[:, None] * x, 0) / w.sum()  # mu* = sum w x / sum w
    cov = (w[:, None] * (x - mean)).T @ (x - mean) / w.sum()  # sum w (x - mu)(x - mu)^T / sum w
    np.testing.assert_allclose(params['mean'], mean, rtol=1e-12)
    np.testing.assert_allclose(params['covariance'], cov, rtol=1e-12)
    np.testing.assert_allclose(params['covariance'], np.cov(x.T, aweights=w, bias=True), rtol=1e-12)
    assert flat['mean'].shape == () and flat['covariance'].shape == ()
    np.testing.assert_allclose([flat['mean'], flat['covariance']], [mean[0], cov[0, 0]], rtol=1e-12)
    w32 = jnp.asarray(w, jnp.float32) if weighted else None
    params32 = gaussian.fit(jnp.asarray(x, jnp.float32), w32)
    assert params32['covariance'].dtype == jnp.float32
    np.testing.assert_allclose(params32['covariance'], cov, rtol=1e-5)


def test_log_prob_matches_scipy_and_samples_match_moments():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 3))
    with jax.enable_x64(True):
        params = gaussian.fit(jnp.asarray(x))
        ours = np.asarray(gaussian.log_prob(params, jnp.asarray(x)))
        flat = gaussian.fit(jnp.asarray(x[:, 0]))
        ours_1d = np.asarray(gaussian.log_prob(flat, jnp.asarray(x[:, 0])))
    ref = scipy.stats.multivariate_normal(params['mean'], params['covariance']).logpdf(x)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    ref_1d = scipy.stats.norm(flat['mean'], np.sqrt(flat['covariance'])).logpdf(x[:, 0])
    np.testing.assert_allclose(ours_1d, ref_1d, rtol=1e-10)
    params32 = jax.tree.map(jnp.float32, params)
    samples = np.asarray(gaussian.sample(params32, jax.random.key(0), 100_000))
    np.testing.assert_allclose(samples.mean(0), params['mean'], atol=0.03)
    np.testing.assert_allclose(np.cov(samples.T), params['covariance'], rtol=0.03, atol=0.02)
    assert gaussian.sample(jax.tree.map(jnp.float32, flat), jax.random.key(0), 5).shape == (5,)


def test_estimator_matches_empirical_covariance():
    rng = np.random.default_rng(2)
    x, test = rng.normal(size=(200, 3)) + 1.0, rng.normal(size=(50, 3))
    for centered in (False, True):
        ref = EmpiricalCovariance(assume_centered=centered).fit(x)
        ours = GaussianMLE(assume_centered=centered).fit(x)
        np.testing.assert_allclose(ours.location_, ref.location_, atol=1e-12)
        np.testing.assert_allclose(ours.covariance_, ref.covariance_, rtol=1e-10)
        np.testing.assert_allclose(ours.precision_, ref.precision_, rtol=1e-8)
        np.testing.assert_allclose(ours.score(test), ref.score(test), rtol=1e-10)
        np.testing.assert_allclose(ours.mahalanobis(test), ref.mahalanobis(test), rtol=1e-8)
    assert GaussianMLE().fit(x).sample(4, random_state=0).shape == (4, 3)
