"""Gaussian KDE against SciPy's gaussian_kde and scikit-learn's KernelDensity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from sklearn.neighbors import KernelDensity as SklearnKernelDensity

from genmodels.classical import KernelDensity, kde


def correlated(n, d, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 3.0


@pytest.mark.parametrize('rule', ['scott', 'silverman'])
@pytest.mark.parametrize('weighted', [False, True])
def test_rules_match_scipy(rule, weighted):
    rng = np.random.default_rng(0)
    for d in (1, 3):
        x = correlated(400, d, seed=d)
        queries = correlated(300, d, seed=10 + d) * 1.5
        w = rng.uniform(0.1, 2.0, 400) if weighted else None
        ref = scipy.stats.gaussian_kde(x.T, bw_method=rule, weights=w)
        with jax.enable_x64(True):
            params = kde.fit(jnp.asarray(x), rule, weights=None if w is None else jnp.asarray(w))
            ours = np.asarray(kde.log_density(params, jnp.asarray(queries)))
        np.testing.assert_allclose(float(params['bandwidth']), ref.factor, rtol=1e-12)
        np.testing.assert_allclose(ours, ref.logpdf(queries.T), rtol=1e-5)
    with jax.enable_x64(True):  # 1D data may also come as a flat [N] array
        params = kde.fit(jnp.asarray(x[:, 0]), rule)
        flat = np.asarray(kde.log_density(params, jnp.asarray(queries[:, 0])))
    ref = scipy.stats.gaussian_kde(x[:, 0], rule).logpdf(queries[:, 0])
    np.testing.assert_allclose(flat, ref, rtol=1e-5)


def test_numeric_bandwidth_matches_sklearn_and_blocks_do_not_change_the_answer():
    x, queries = correlated(500, 4, seed=1), correlated(333, 4, seed=2)
    ref = SklearnKernelDensity(bandwidth=0.7).fit(x).score_samples(queries)
    with jax.enable_x64(True):
        params = kde.fit(jnp.asarray(x), 0.7)
        q = jnp.asarray(queries)
        whole = np.asarray(kde.log_density(params, q, query_chunk=4096, point_chunk=4096))
        blocked = np.asarray(kde.log_density(params, q, query_chunk=37, point_chunk=61))
    np.testing.assert_allclose(whole, ref, rtol=1e-10)
    np.testing.assert_allclose(blocked, whole, rtol=1e-12)
    params32 = kde.fit(jnp.asarray(x, jnp.float32), 0.7)
    q32 = jnp.asarray(queries, jnp.float32)
    blocked32 = kde.log_density(params32, q32, query_chunk=37, point_chunk=61)
    np.testing.assert_allclose(blocked32, ref, rtol=1e-5)


def test_large_evaluation_has_bounded_memory():
    """1e6 queries against 1e5 points compile to a program with small temporaries (not run here)."""
    points = {'points': jax.ShapeDtypeStruct((100_000, 2), jnp.float32),
              'log_weights': jax.ShapeDtypeStruct((100_000,), jnp.float32),
              'kernel_cholesky': jax.ShapeDtypeStruct((2, 2), jnp.float32),
              'bandwidth': jax.ShapeDtypeStruct((), jnp.float32)}
    queries = jax.ShapeDtypeStruct((1_000_000, 2), jnp.float32)
    memory = kde.log_density.lower(points, queries).compile().memory_analysis()
    assert memory.temp_size_in_bytes < 64 * 2 ** 20, memory.temp_size_in_bytes  # all pairs: 400 GB


def test_cv_picks_a_sensible_bandwidth():
    rng = np.random.default_rng(0)
    gaussian = rng.normal(size=(1500, 2))
    scott = kde.scott_factor(1500 * 0.8, 2)
    factor = float(kde.cv_factor(jnp.asarray(gaussian, jnp.float32), jnp.ones(1500),
                                 jax.random.key(0)))
    assert scott / 2 < factor < scott * 2, (factor, scott)  # Scott's rule suits a Gaussian
    centers = rng.integers(0, 4, 1500)[:, None] * 6.0
    clusters = centers + 0.3 * rng.normal(size=(1500, 2))  # Scott oversmooths separated clusters
    params = kde.fit(jnp.asarray(clusters, jnp.float32), 'cv', rng=jax.random.key(0))
    assert float(params['bandwidth']) < kde.scott_factor(1500, 2) / 2
    fresh = rng.integers(0, 4, 1000)[:, None] * 6.0 + 0.3 * rng.normal(size=(1000, 2))
    fresh = jnp.asarray(fresh, jnp.float32)
    scores = {rule: float(jnp.mean(kde.log_density(kde.fit(jnp.asarray(clusters, jnp.float32), rule,
                                                            rng=jax.random.key(0)), fresh)))
              for rule in ('cv', 'scott', 'silverman')}
    assert scores['cv'] > max(scores['scott'], scores['silverman']), scores


def test_samples_have_the_kde_moments():
    x = correlated(2000, 2, seed=3).astype(np.float32)
    params = kde.fit(jnp.asarray(x), 'scott')
    samples = np.asarray(kde.sample(params, jax.random.key(1), 200_000))
    data_cov = np.cov(x.T, bias=True)
    chol = np.asarray(params['kernel_cholesky'])
    scale = np.sqrt(np.diag(data_cov)).max()
    np.testing.assert_allclose(samples.mean(0), x.mean(0), atol=0.05 * scale)
    np.testing.assert_allclose(np.cov(samples.T), data_cov + chol @ chol.T, rtol=0.03, atol=0.03)


def test_estimator_matches_sklearn_kernel_density():
    x, queries = correlated(300, 3, seed=4), correlated(100, 3, seed=5)
    w = np.random.default_rng(0).uniform(0.5, 1.5, 300)
    ref = SklearnKernelDensity(bandwidth=0.8).fit(x, sample_weight=w)
    ours = KernelDensity(bandwidth=0.8).fit(x, sample_weight=w)
    np.testing.assert_allclose(ours.score_samples(queries), ref.score_samples(queries), rtol=1e-10)
    np.testing.assert_allclose(ours.score(queries), ref.score(queries), rtol=1e-10)
    assert ours.sample(7, random_state=0).shape == (7, 3)
    scott = KernelDensity(bandwidth='scott').fit(x)
    sklearn_scott = SklearnKernelDensity(bandwidth='scott').fit(x)
    assert scott.bandwidth_ == pytest.approx(sklearn_scott.bandwidth_)
    np.testing.assert_allclose(scott.kernel_covariance_, scott.bandwidth_ ** 2 * np.cov(x.T),
                               rtol=1e-10)
    cv = KernelDensity(bandwidth='cv').fit(x.astype(np.float32))
    assert cv.score_samples(queries).dtype == np.float32
