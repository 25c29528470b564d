"""KDE against SciPy's gaussian_kde and scikit-learn's KernelDensity (every kernel and metric)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.scipy.linalg import solve_triangular
from sklearn.neighbors import KernelDensity as SklearnKernelDensity
from sklearn.neighbors import NearestNeighbors

from genmodels import xla_cpu
from genmodels.classical import KernelDensity, kde, kde_kernels


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
    for rule in ('scott', 'silverman'):  # scikit-learn's isotropic rules
        ours, ref = KernelDensity(bandwidth=rule).fit(x), SklearnKernelDensity(bandwidth=rule).fit(x)
        assert ours.bandwidth_ == pytest.approx(ref.bandwidth_)
        np.testing.assert_allclose(ours.kernel_covariance_, ours.bandwidth_ ** 2 * np.eye(3))
        np.testing.assert_allclose(ours.score_samples(queries), ref.score_samples(queries),
                                   rtol=1e-10)
    cv = KernelDensity(bandwidth='cv').fit(x.astype(np.float32))
    assert cv.score_samples(queries).dtype == np.float32


# Every kernel with the euclidean metric, every metric with one compact kernel: one compile each.
# (d = 3: scikit-learn's cosine norm is right for odd d only.)
KERNEL_METRIC = ([(k, 'euclidean', None) for k in kde_kernels.KERNELS]
                 + [('epanechnikov', m, None) for m in ('manhattan', 'chebyshev', 'haversine')]
                 + [('exponential', 'minkowski', {'p': 3.0})])


@pytest.mark.parametrize('kernel,metric,metric_params', KERNEL_METRIC)
def test_every_kernel_and_metric_matches_sklearn(kernel, metric, metric_params):
    """Same densities as scikit-learn's exact evaluation (rtol = atol = 0), weighted, and zero
    (log -inf) where a compact kernel reaches no point. scikit-learn's trees return tiny values
    there instead (log densities near -35, from their node bounds; which queries depends on the
    tree), so densities are compared to 1e-12 absolute and log densities above -30 to 1e-9."""
    rng = np.random.default_rng(1)
    d = 2 if metric == 'haversine' else 3
    x, w = rng.normal(size=(200, d)) * 0.5, rng.uniform(0.5, 2.0, 200)
    queries = np.concatenate([rng.normal(size=(60, d)) * 0.5, np.full((2, d), 3.0)])
    kwargs = dict(bandwidth=0.4, kernel=kernel, metric=metric, metric_params=metric_params)
    ours = KernelDensity(**kwargs).fit(x, sample_weight=w).score_samples(queries)
    ref = SklearnKernelDensity(algorithm='ball_tree', **kwargs).fit(
        x, sample_weight=w).score_samples(queries)
    np.testing.assert_allclose(np.exp(ours), np.exp(ref), rtol=1e-9, atol=1e-12)
    clear = ref > -30
    assert clear.sum() > 40
    np.testing.assert_allclose(ours[clear], ref[clear], rtol=1e-9)
    if kernel not in ('gaussian', 'exponential') and metric != 'haversine':  # far corner: empty
        assert np.all(ours[-2:] == -np.inf)


@pytest.mark.parametrize('d', [1, 2, 3, 6])
def test_kernel_norms_integrate_each_kernel_to_one(d):
    """exp(log_kernel_norm) * integral of K(|x| / h) = 1, the integral in polar coordinates
    (S_(d-1) times a radial quadrature), the cosine kernel's too (scikit-learn's cosine norm
    is right for odd d only: see kde_kernels.py)."""
    dr = 1e-4  # midpoint rule; the compact kernels' edge r = h = 0.7 falls on a cell boundary
    r = (np.arange(400_000) + 0.5) * dr
    area = 2 * np.pi ** (d / 2) / np.exp(scipy.special.gammaln(d / 2))
    for kernel in kde_kernels.KERNELS:
        radial = np.exp(np.asarray(kde_kernels.log_kernel(jnp.asarray(r / 0.7), kernel)))
        integral = area * np.sum(radial * r ** (d - 1)) * dr
        assert np.exp(kde_kernels.log_kernel_norm(0.7, d, kernel)) * integral == pytest.approx(
            1.0, rel=2e-4), kernel


def test_sampling_kernels_like_sklearn():
    """gaussian and tophat draw around the data (tophat within h of a point); integer weights
    draw as repeated rows; the other kernels raise NotImplementedError, as in scikit-learn."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 3))
    for kernel in kde_kernels.SAMPLED:
        draws = KernelDensity(bandwidth=0.2, kernel=kernel).fit(x).sample(500, random_state=0)
        dist = NearestNeighbors(n_neighbors=1).fit(x).kneighbors(draws)[0][:, 0]
        assert draws.shape == (500, 3)
        assert dist.max() < (0.2 if kernel == 'tophat' else 5 * 0.2)
    # tophat radii: P(r < s) = (s / h)^3, so the median radius is h / 2^(1/3)
    tophat = KernelDensity(bandwidth=1.0, kernel='tophat').fit(np.zeros((1, 3)))
    radii = np.linalg.norm(tophat.sample(20_000, random_state=1), axis=1)
    assert np.median(radii) == pytest.approx(0.5 ** (1 / 3), abs=0.01)
    counts = rng.integers(1, 4, 100)
    weighted = KernelDensity(bandwidth=0.2).fit(x, sample_weight=counts.astype(float))
    repeated = KernelDensity(bandwidth=0.2).fit(np.repeat(x, counts, axis=0))
    np.testing.assert_allclose(weighted.sample(50, random_state=3),
                               repeated.sample(50, random_state=3), rtol=1e-12)
    for kernel in ('epanechnikov', 'exponential', 'linear', 'cosine'):
        with pytest.raises(NotImplementedError):
            KernelDensity(kernel=kernel).fit(x).sample(3)


def test_metric_rules_follow_sklearn():
    x = np.random.default_rng(3).normal(size=(20, 2))
    with pytest.raises(ValueError, match='invalid metric'):
        KernelDensity(algorithm='kd_tree', metric='haversine').fit(x)
    KernelDensity(algorithm='ball_tree', metric='haversine').fit(x)
    with pytest.raises(ValueError, match='haversine metric needs 2 features'):
        KernelDensity(metric='haversine').fit(np.zeros((5, 3)))
    with pytest.raises(NotImplementedError, match='not implemented'):
        KernelDensity(metric='canberra').fit(x)
    minkowski_1 = KernelDensity(metric='minkowski', metric_params={'p': 1}).fit(x)
    manhattan = KernelDensity(metric='manhattan').fit(x)
    np.testing.assert_allclose(minkowski_1.score_samples(x), manhattan.score_samples(x))


def test_kde_programs_take_ynn_fusions_at_the_top_level_only():
    """configure()'s empty flag turns YNN fusions off for every program; KDE's log-density asks
    for them itself (xla_cpu.jit), unless the user chose a value, and inside a caller's jit it is
    an ordinary nested jit (JAX takes compiler options at the top level only)."""
    fusions = {'xla_cpu_experimental_ynn_fusion_type': xla_cpu.LIBRARY_FUSIONS}
    assert xla_cpu.library_fusion_options({'XLA_FLAGS': f'{xla_cpu.FLAG}='}) == fusions
    assert xla_cpu.library_fusion_options({}) == fusions
    assert xla_cpu.library_fusion_options(
        {'XLA_FLAGS': f'--foo {xla_cpu.FLAG}=LIBRARY_FUSION_TYPE_DOT'}) is None
    rng = np.random.default_rng(0)
    params = kde.fit(jnp.asarray(rng.normal(size=(300, 3)), jnp.float32), 0.5)
    queries = jnp.asarray(rng.normal(size=(200, 3)), jnp.float32)
    caller = jax.jit(lambda p, q: kde.log_density(p, q))
    np.testing.assert_allclose(kde.log_density(params, queries), caller(params, queries),
                               rtol=1e-5)
    # YNN fusions show in the compiled program as __ynn_fusion kinds.
    assert '__ynn_fusion' in kde.log_density.lower(params, queries).compile().as_text()
    assert '__ynn_fusion' not in caller.lower(params, queries).compile().as_text()


def test_cross_validation_and_ynn_fallback_work_at_every_dimension():
    """XLA:CPU's YNN fusions fail, when the program runs, on a batch of D x D matrices at D >= 16
    (KDE's cross-validation over 21 bandwidths at D = 50, the kde_digits config, failed so).
    cv_factor uses a plain jit, and xla_cpu.jit runs a function on which YNN fails without it."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(400, 50)), jnp.float32)
    factor = float(kde.cv_factor(x, jnp.ones(400), jax.random.key(0)))
    assert 0.5 < factor / kde.scott_factor(320, 50) < 2.0  # Scott's rule suits a Gaussian

    def whiten(factors, chol, points):  # cv_factor's pattern: a [21, D, D] batch of f * L
        return jax.vmap(lambda f: solve_triangular(f * chol, points.T, lower=True).T)(factors)

    chol = jnp.tril(jnp.asarray(rng.normal(size=(32, 32)), jnp.float32)) + 8 * jnp.eye(32)
    points = jnp.asarray(rng.normal(size=(100, 32)), jnp.float32)
    factors = jnp.linspace(1.0, 2.0, 21)
    ynn_or_fallback = xla_cpu.jit(whiten)
    for _ in range(2):  # the second call takes the remembered route
        np.testing.assert_allclose(ynn_or_fallback(factors, chol, points),
                                   jax.jit(whiten)(factors, chol, points), rtol=1e-5, atol=1e-6)
