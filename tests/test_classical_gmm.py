"""Gaussian mixture EM against scikit-learn from the same start, and its guarantees.

Most fits share one shape (N, D, K) and max_iter so that each covariance type compiles once.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from genmodels.classical import em, GaussianMixture, gmm
from genmodels.data import toy

K, D, N, MAX_ITER = 3, 3, 600, 200


def datasets():
    """Three [N, D] data sets of one shape."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, K, N)
    centers = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, 0.0], [0.0, 6.0, -3.0]])
    blobs = centers[labels] + rng.normal(size=(N, D))
    mixing = rng.normal(size=(K, D, D))
    noise = np.einsum('nde,ne->nd', mixing[labels], rng.normal(size=(N, D)))
    anisotropic = centers[labels] * 0.5 + noise
    heavy = 2.0 * centers[labels] + rng.standard_t(3, size=(N, D)) + 10.0  # far from the origin
    return {'blobs': blobs, 'anisotropic': anisotropic, 'heavy_tailed_shifted': heavy}


def initial(x, covariance_type, seed):
    """weights, means and precisions to start both implementations from."""
    rng = np.random.default_rng(seed)
    means = x[rng.choice(len(x), K, replace=False)]
    scale = 1.0 / np.var(x)
    prec = {'full': np.tile(np.eye(D) * scale, (K, 1, 1)), 'tied': np.eye(D) * scale,
            'diag': np.full((K, D), scale), 'spherical': np.full(K, scale)}[covariance_type]
    return np.full(K, 1.0 / K), means, prec


def fit_from(x, covariance_type, weights, means, prec, **kw):
    x = jnp.asarray(x)  # float64 inside jax.enable_x64, float32 otherwise
    pc = gmm.precisions_cholesky_from_precisions(jnp.asarray(prec, x.dtype), covariance_type)
    init = {'weights': weights, 'means': means, 'precisions_cholesky': pc}
    return em.fit(x, jax.random.key(0), K, covariance_type=covariance_type, max_iter=MAX_ITER,
                  init=init, **kw)


@pytest.mark.parametrize('covariance_type', gmm.COVARIANCE_TYPES)
def test_em_matches_sklearn_from_same_start_and_never_decreases(covariance_type):
    for name, x in datasets().items():
        weights, means, prec = initial(x, covariance_type, seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            ref = SklearnGaussianMixture(K, covariance_type=covariance_type, tol=1e-6,
                                         max_iter=MAX_ITER, weights_init=weights,
                                         means_init=means, precisions_init=prec).fit(x)
        with jax.enable_x64(True):
            params, info = fit_from(x, covariance_type, weights, means, prec, tol=1e-6)
        assert int(info['n_iter']) == ref.n_iter_, name
        np.testing.assert_allclose(params['means'], ref.means_, rtol=1e-4,
                                   atol=1e-4 * np.abs(x).max(), err_msg=name)
        np.testing.assert_allclose(params['covariances'], ref.covariances_, rtol=1e-4,
                                   atol=1e-4 * np.abs(ref.covariances_).max(), err_msg=name)
        np.testing.assert_allclose(params['weights'], ref.weights_, rtol=1e-4, atol=1e-6,
                                   err_msg=name)
        np.testing.assert_allclose(float(info['lower_bound']), ref.lower_bound_, rtol=1e-4,
                                   err_msg=name)
        trace = np.asarray(info['lower_bounds'])[:ref.n_iter_]
        np.testing.assert_allclose(trace, ref.lower_bounds_, rtol=1e-4, err_msg=name)
        assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:])), name  # EM never decreases it


def test_float32_em_close_to_float64_sklearn():
    x = datasets()['heavy_tailed_shifted']
    weights, means, prec = initial(x, 'full', seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ref = SklearnGaussianMixture(K, tol=0, max_iter=MAX_ITER, weights_init=weights,
                                     means_init=means, precisions_init=prec).fit(x)
    # 600 rows in blocks of 256: the last block is padded with zero-weight rows
    params, info = fit_from(x.astype(np.float32), 'full', weights, means, prec, tol=0.0,
                            chunk_size=256)
    assert params['means'].dtype == jnp.float32
    np.testing.assert_allclose(params['means'], ref.means_, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(params['covariances'], ref.covariances_, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(float(info['lower_bound']), ref.lower_bound_, rtol=1e-5)


@pytest.mark.parametrize('covariance_type', ['full', 'tied'])
def test_float32_scatter_keeps_its_precision_for_tight_components_far_from_the_origin(
        covariance_type):
    """Unit-scale components 10^4 apart and 5 10^4 from the origin: the float32 covariances stay
    within 1e-3 of float64 scikit-learn's (a raw second moment would lose them entirely)."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(K, D)) * 1e4 + 5e4
    x = centers[rng.integers(0, K, 3000)] + rng.normal(size=(3000, D))
    means = centers + rng.normal(size=(K, D)) * 0.3
    prec = np.eye(D) if covariance_type == 'tied' else np.tile(np.eye(D), (K, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ref = SklearnGaussianMixture(K, covariance_type=covariance_type, tol=0, max_iter=10,
                                     weights_init=np.full(K, 1 / K), means_init=means,
                                     precisions_init=prec).fit(x)
    params, _ = fit_from(x.astype(np.float32), covariance_type, np.full(K, 1 / K), means, prec,
                         tol=0.0, chunk_size=512)
    np.testing.assert_allclose(params['covariances'], ref.covariances_, rtol=0,
                               atol=1e-3 * np.abs(ref.covariances_).max())


@pytest.mark.parametrize('init_params', ['k-means++', 'random', 'random_from_data'])
def test_initialisations_converge_monotonically_and_keep_the_best_restart(init_params):
    x = datasets()['blobs'].astype(np.float32)
    _, info = em.fit(jnp.asarray(x), jax.random.key(3), K, init_params=init_params, tol=1e-5,
                     max_iter=MAX_ITER, n_init=2)
    trace = np.asarray(info['lower_bounds'])[:int(info['n_iter'])]
    assert bool(info['converged']) and len(trace) >= 2
    assert np.all(np.diff(trace) >= -1e-5 * np.abs(trace[1:]))
    restarts = np.asarray(info['restart_lower_bounds'])
    assert restarts.shape == (2,) and float(info['lower_bound']) == restarts.max()
    if init_params == 'k-means++':  # the others may stop in a local optimum, as scikit-learn's do
        best_known = SklearnGaussianMixture(K, n_init=3, random_state=0).fit(x).lower_bound_
        assert float(info['lower_bound']) > best_known - 1e-3


def test_sample_weights_act_as_repeats():
    x = datasets()['blobs']
    counts = np.random.default_rng(0).integers(1, 4, N)
    start = initial(x, 'full', seed=5)
    with jax.enable_x64(True):
        weighted, _ = fit_from(x, 'full', *start, sample_weight=counts)
        repeated, _ = fit_from(np.repeat(x, counts, axis=0), 'full', *start)
    np.testing.assert_allclose(weighted['covariances'], repeated['covariances'], rtol=1e-9)
    np.testing.assert_allclose(weighted['means'], repeated['means'], rtol=1e-9)


def test_bic_picks_the_true_number_of_components():
    x = np.asarray(toy.get('ring_8').sample(jax.random.key(0), 2000))
    bics = {k: GaussianMixture(k, random_state=0).fit(x).bic(x) for k in (7, 8, 9)}
    assert min(bics, key=bics.get) == 8, bics


def test_estimator_matches_sklearn_attributes_and_warm_start():
    x = datasets()['blobs']
    weights, means, prec = initial(x, 'full', seed=4)
    kw = dict(weights_init=weights, means_init=means, precisions_init=prec, tol=1e-6,
              max_iter=MAX_ITER)
    ref = SklearnGaussianMixture(K, **kw).fit(x)
    ours = GaussianMixture(K, **kw).fit(x)
    for name in ('weights_', 'means_', 'covariances_', 'precisions_', 'precisions_cholesky_'):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-4, atol=1e-8)
    assert (ours.n_iter_, ours.converged_) == (ref.n_iter_, ref.converged_)
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-6)
    np.testing.assert_allclose(ours.score_samples(x), ref.score_samples(x), rtol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-6)
    np.testing.assert_allclose([ours.bic(x), ours.aic(x)], [ref.bic(x), ref.aic(x)], rtol=1e-6)
    np.testing.assert_array_equal(ours.predict(x), ref.predict(x))
    samples, labels = ours.sample(500)
    assert samples.shape == (500, D) and np.all(np.diff(labels) >= 0)
    assert abs(np.mean(samples[:, 1]) - np.mean(x[:, 1])) < 0.5

    warm = GaussianMixture(K, warm_start=True, **kw).fit(x)
    first = warm.lower_bound_
    warm.fit(x)  # continues from the optimum: one more step moves the bound by less than tol
    assert warm.n_iter_ == 1 and abs(warm.lower_bound_ - first) < 1e-6


def test_failed_covariance_raises_a_helpful_error():
    x = np.repeat(np.eye(D), N // D, axis=0)  # 3 distinct points, one per component: Sigma_k = 0
    with pytest.raises(ValueError, match='reg_covar'):
        fit_from(x, 'full', np.full(K, 1 / K), np.eye(D), np.tile(np.eye(D), (K, 1, 1)),
                 reg_covar=0.0, chunk_size=256)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_fitted_arrays_keep_the_input_dtype(dtype):
    x = datasets()['blobs'].astype(dtype)
    model = GaussianMixture(K, max_iter=MAX_ITER, random_state=0).fit(x)
    for name in ('weights_', 'means_', 'covariances_', 'precisions_', 'precisions_cholesky_'):
        assert getattr(model, name).dtype == dtype, name


def test_max_iter_zero_initialises_only_as_sklearn():
    """max_iter=0: the initial parameters, not converged, n_iter_ 0, lower bound -inf, and (as
    scikit-learn) no ConvergenceWarning; the model scores like scikit-learn's from its start."""
    x = datasets()['blobs']
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        ours = GaussianMixture(K, max_iter=0, random_state=0).fit(x)
        ref = SklearnGaussianMixture(K, max_iter=0, random_state=0).fit(x)
    assert (ours.converged_, ours.n_iter_, ours.lower_bound_, ours.lower_bounds_) == (
        ref.converged_, ref.n_iter_, ref.lower_bound_, ref.lower_bounds_) == (False, 0, -np.inf, [])
    assert np.isfinite(ours.score(x))
    # both start from k-means: the same partition of these well separated blobs
    np.testing.assert_allclose(np.sort(ours.weights_), np.sort(ref.weights_), atol=0.02)


@pytest.mark.parametrize('kwargs', [
    {'weights_init': [0.5, 0.6, -0.1]}, {'weights_init': [0.2, 0.2, 0.2]},
    {'weights_init': [0.5, 0.5]}, {'means_init': np.zeros((2, D))},
    {'precisions_init': np.zeros((K, D))},
    {'precisions_init': np.tile(-np.eye(D), (K, 1, 1))},
    {'precisions_init': np.zeros((K, D)), 'covariance_type': 'diag'},
])
def test_bad_initial_parameters_raise_sklearns_errors(kwargs):
    """The same exception type and message as scikit-learn for each bad initial parameter."""
    x = datasets()['blobs'][:60]
    with pytest.raises(ValueError) as ref:
        SklearnGaussianMixture(K, **kwargs).fit(x)
    with pytest.raises(ValueError) as ours:
        GaussianMixture(K, **kwargs).fit(x)
    assert str(ours.value) == str(ref.value)


def test_em_programs_hand_their_dots_to_ynnpack_and_agree_with_xlas_own_kernels():
    """EM and the mixture densities ask XLA:CPU for YNNPACK's dots (xla_cpu.DOT_FUSIONS) though
    the entry points turn YNN fusions off for every other program; inside a caller's jit they are
    ordinary nested jits, and both routes give the same log-densities."""
    x = jnp.asarray(datasets()['anisotropic'], jnp.float32)
    params, _ = em.fit(x, jax.random.key(0), K, max_iter=5)
    if jax.default_backend() == 'cpu':
        compiled = gmm.log_prob.lower(params, x, covariance_type='full').compile().as_text()
        assert '__ynn_fusion' in compiled
    caller = jax.jit(lambda p, v: gmm.log_prob(p, v, 'full'))
    np.testing.assert_allclose(gmm.log_prob(params, x, 'full'), caller(params, x),
                               rtol=1e-5, atol=1e-5)
