"""Sample-quality metrics and likelihood units, against closed forms and direct implementations."""
import math

import numpy as np
import pytest
import scipy.linalg

from genmodels import metrics
from genmodels.metrics import kid as kid_lib


def random_spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def sqrtm_reference(mu1, s1, mu2, s2):
    """The usual sqrtm route (as pytorch-fid), fine for well-conditioned matrices."""
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
                 - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real)


# ---- Frechet distance -------------------------------------------------------------------------

def test_frechet_commuting_covariances_closed_form():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: d^2 = |dmu|^2 + sum (sqrt a - sqrt b)^2.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a = np.array([0.0, 1e-9, 0.5, 1.0, 2.0, 4.0])  # singular and nearly singular directions too
    b = np.array([1.0, 3.0, 0.0, 1.0, 0.25, 9.0])
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = metrics.frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-9)


def test_frechet_matches_scipy_sqrtm_on_random_spd():
    rng = np.random.default_rng(1)
    for d in (2, 10, 40):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = random_spd(rng, d), random_spd(rng, d, scale=3.0)
        want = sqrtm_reference(mu1, s1, mu2, s2)
        assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-9)


def test_frechet_singular_covariance():
    # S1 = A A^T has rank 5 of 30. The non-zero eigenvalues of S1 S2 = A (A^T S2) are those of the
    # 5x5 SPD matrix A^T S2 A, which gives an exact reference for Tr((S1 S2)^{1/2}).
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 5))
    s1, s2 = a @ a.T, random_spd(rng, 30)
    mu = rng.normal(size=30)
    want = np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(a.T @ s2 @ a)).real
    assert metrics.frechet_distance(mu, s1, mu, s2) == pytest.approx(want, rel=1e-9)
    assert abs(metrics.frechet_distance(mu, s1, mu, s1)) < 1e-9 * np.trace(s1)


def test_fid_of_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(3)
    d = 3
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.25])
    s1, s2 = random_spd(rng, d), random_spd(rng, d, scale=2.0)
    want = metrics.frechet_distance(mu1, s1, mu2, s2)
    errors = []
    for n in (100, 100_000):
        f1 = rng.multivariate_normal(mu1, s1, size=n)
        f2 = rng.multivariate_normal(mu2, s2, size=n)
        errors.append(abs(metrics.fid_from_features(f1, f2) - want))
    assert errors[1] < errors[0] and errors[1] < 0.01 * want


def test_fid_of_a_set_with_itself_is_zero():
    f = np.random.default_rng(4).normal(size=(500, 64)) ** 2  # skewed, like ReLU features
    assert abs(metrics.fid_from_features(f, f)) < 1e-8


def test_frechet_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match='different dimensions'):
        metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match='sigma'):
        metrics.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


# ---- KID -------------------------------------------------------------------------------------

def mmd2_direct(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, written as the double sums of its definition."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_direct_implementation():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(20, 4)), rng.normal(0.5, 1.0, size=(20, 4))
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=5, subset_size=1000)
    # subsets of all 20 points are permutations, so every subset gives the full-set estimate
    assert mean == pytest.approx(mmd2_direct(x, y), rel=1e-10)
    assert std < 1e-10


def test_kid_is_unbiased_for_one_distribution():
    rng = np.random.default_rng(6)
    draws, biased = [], []
    for _ in range(400):
        x, y = rng.normal(size=(15, 5)), rng.normal(size=(15, 5))
        draws.append(metrics.kernel_inception_distance(x, y, num_subsets=1, seed=rng)[0])
        kxx, kyy = kid_lib.polynomial_kernel(x, x), kid_lib.polynomial_kernel(y, y)
        biased.append(kxx.mean() + kyy.mean() - 2 * kid_lib.polynomial_kernel(x, y).mean())
    se = np.std(draws) / np.sqrt(len(draws))
    assert abs(np.mean(draws)) < 3 * se
    assert np.mean(biased) > 10 * se  # the biased (V-statistic) estimate would fail the check above


def test_kid_positive_for_different_distributions():
    rng = np.random.default_rng(7)
    mean, std = metrics.kernel_inception_distance(rng.normal(size=(300, 8)),
                                                  rng.normal(1.0, 1.0, size=(300, 8)),
                                                  num_subsets=10, subset_size=100)
    assert mean > 5 * std > 0


# ---- Inception Score -------------------------------------------------------------------------

def test_inception_score_uniform_predictions_is_one():
    mean, std = metrics.inception_score(np.full((100, 10), 0.1), splits=10)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_confident_balanced_predictions_is_num_classes():
    probs = np.eye(7)[np.arange(7 * 4 * 5) % 7]  # every split holds every class equally often
    mean, std = metrics.inception_score(probs, splits=5)
    assert mean == pytest.approx(7.0) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_matches_definition():
    p = np.random.default_rng(8).dirichlet(np.full(6, 0.3), size=50)
    p_y = p.mean(axis=0)
    want = np.exp(np.mean(np.sum(p * (np.log(p) - np.log(p_y)), axis=1)))
    assert metrics.inception_score(p, splits=1)[0] == pytest.approx(want, rel=1e-10)


def test_inception_score_rejects_logits():
    with pytest.raises(ValueError, match='softmax'):
        metrics.inception_score(np.random.default_rng(0).normal(size=(20, 5)), splits=2)


# ---- Precision and recall --------------------------------------------------------------------

def precision_recall_direct(real, fake, k):
    dist = lambda a, b: np.linalg.norm(a[:, None] - b[None], axis=-1)
    r_real = np.sort(dist(real, real), axis=1)[:, k]
    r_fake = np.sort(dist(fake, fake), axis=1)[:, k]
    precision = np.mean(np.any(dist(fake, real) <= r_real[None], axis=1))
    recall = np.mean(np.any(dist(real, fake) <= r_fake[None], axis=1))
    return precision, recall


def test_precision_recall_matches_direct_computation_across_blocks():
    rng = np.random.default_rng(9)
    real, fake = rng.normal(size=(53, 5)), rng.normal(0.7, 1.3, size=(41, 5))
    want = precision_recall_direct(real, fake, k=3)
    assert 0 < want[0] < 1 and 0 < want[1] < 1
    assert metrics.precision_recall(real, fake, k=3, batch_size=8) == pytest.approx(want)


def test_precision_recall_of_set_with_itself_and_a_far_set():
    real = np.random.default_rng(10).normal(size=(64, 16))
    assert metrics.precision_recall(real, real, k=3, batch_size=16) == (1.0, 1.0)
    assert metrics.precision_recall(real, real + 1000.0, k=3) == (0.0, 0.0)


# ---- Likelihood units ------------------------------------------------------------------------

def test_bits_per_dim_round_trip():
    nats = np.array([10.0, 543.21, 2000.0])
    assert np.allclose(metrics.nats_per_example(metrics.bits_per_dim(nats, 784), 784), nats)
    assert metrics.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)


@pytest.mark.parametrize('low,high', [(0.0, 1.0), (-1.0, 1.0)])
def test_uniform_density_on_dequantised_pixels_is_8_bits_per_dim(low, high):
    # A uniform density on [low, high]^D puts mass 1/256 on each 8-bit level: exactly 8 bits/dim.
    d = 3072
    prep = metrics.Preprocessing('dequantized', 256, low, high)
    nll_density = d * math.log(high - low)
    rec = metrics.likelihood_record(nll_density, d, prep)
    assert rec['nll_bits_per_dim'] == pytest.approx(8.0)
    assert (rec['data_dequantized'], rec['data_scale_min'], rec['data_scale_max']) == (1, low, high)


def test_dequantisation_correction_is_exact_for_piecewise_constant_densities():
    # If p is constant on each bin, log P(x) = log(p(y) * w^D) exactly: Jensen's bound is tight.
    prep = metrics.Preprocessing('dequantized', num_levels=4, low=-1.0, high=1.0)  # w = 0.5
    bin_mass = np.array([0.1, 0.2, 0.3, 0.4])
    x = np.array([0, 3, 2])                                    # one discrete example, D = 3
    nll_density = -np.sum(np.log(bin_mass[x] / prep.bin_width))
    want = -np.sum(np.log(bin_mass[x]))
    assert metrics.discrete_nll_nats(nll_density, 3, prep) == pytest.approx(want)


def test_binarised_likelihoods_need_no_correction():
    prep = metrics.Preprocessing('binarized', num_levels=2)
    rec = metrics.likelihood_record(784 * math.log(2), 784, prep, prefix='elbo')
    assert rec == {'elbo_nats': pytest.approx(784 * math.log(2)),
                   'elbo_bits_per_dim': pytest.approx(1.0),
                   'data_binarized': 1, 'data_dequantized': 0, 'data_num_levels': 2,
                   'data_scale_min': 0.0, 'data_scale_max': 1.0}
    with pytest.raises(ValueError, match='kind'):
        metrics.Preprocessing('dequantised')


# ---- Reference statistics on disk ------------------------------------------------------------

def make_stats(**overrides):
    rng = np.random.default_rng(11)
    fields = dict(mu=rng.normal(size=4), sigma=random_spd(rng, 4), dataset='mnist_bundled',
                  split='train', num_images=4500, extractor='pytorch_fid_inception_v3_pool3',
                  extractor_sha256='ab' * 32)
    return metrics.ReferenceStats(**{**fields, **overrides})


def test_reference_stats_round_trip(tmp_path):
    stats = make_stats()
    metrics.save_reference_stats(tmp_path / 'ref.npz', stats)
    loaded = metrics.load_reference_stats(tmp_path / 'ref.npz', dataset='mnist_bundled', split='train',
                                          extractor_sha256='ab' * 32)
    assert np.array_equal(loaded.mu, stats.mu) and np.array_equal(loaded.sigma, stats.sigma)
    assert loaded.metadata() == stats.metadata()


def test_reference_stats_mismatch_and_corruption(tmp_path):
    path = tmp_path / 'ref.npz'
    metrics.save_reference_stats(path, make_stats())
    with pytest.raises(ValueError, match="split is 'train' but 'test' was expected"):
        metrics.load_reference_stats(path, split='test')
    with pytest.raises(ValueError, match='extractor_sha256'):
        metrics.load_reference_stats(path, extractor_sha256='cd' * 32)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match='corrupt'):
        metrics.load_reference_stats(path)
    with pytest.raises(FileNotFoundError, match='do not exist'):
        metrics.load_reference_stats(tmp_path / 'missing.npz')
    with pytest.raises(ValueError, match='sha256'):
        metrics.save_reference_stats(path, make_stats(extractor_sha256='not-a-hash'))
