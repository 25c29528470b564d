"""tools/density_1d.py end to end: figures, misspecification cost, EM monotonicity, Gaussian MLE."""

import os

import numpy as np
import pytest

from tools import density_1d

ARGS = {'seed': 0, 'num_train': 2000, 'num_test': 10_000, 'mean': 1.0, 'std': 2.0}


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('density_1d'))
    argv = [f'--{key}={value}' for key, value in ARGS.items()] + [f'--out={out}']
    return out, density_1d.main(argv)


def test_figures_are_non_trivial_pngs(run):
    out, _ = run
    for name in ('gaussian_mle.png', 'bumps.png', 'em_trace.png'):
        with open(os.path.join(out, name), 'rb') as f:
            data = f.read()
        assert data.startswith(b'\x89PNG\r\n\x1a\n') and len(data) > 20_000, name
    assert os.path.exists(os.path.join(out, 'results.json'))


def test_three_components_match_the_truth_and_two_pay_for_misspecification(run):
    models = run[1]['bumps_1d']['models']
    kl2, kl3 = models['GMM K = 2']['kl_estimate'], models['GMM K = 3']['kl_estimate']
    # The right model family costs O(parameters / N) = O(8 / 2000) nats; two bumps merged, ~0.17.
    assert abs(kl3) < 0.01
    assert kl2 > kl3 + 0.1


def test_em_log_likelihood_never_decreases(run):
    trace = np.asarray(run[1]['bumps_1d']['em_trace'])
    assert len(trace) > 2 and run[1]['bumps_1d']['em_converged']
    assert np.all(np.diff(trace) >= -1e-6)  # EM's ascent property, up to float32 rounding


def test_gaussian_mle_is_numpy_mean_and_biased_variance(run):
    x = density_1d.draw(ARGS['seed'], ARGS['num_train'], ARGS['num_test'], ARGS['mean'],
                        ARGS['std'])['gaussian'].astype(np.float64)
    fitted = run[1]['gaussian']
    np.testing.assert_allclose(fitted['mean'], np.mean(x), rtol=1e-5)
    np.testing.assert_allclose(fitted['var'], np.var(x, ddof=0), rtol=1e-5)
    assert fitted['var'] != pytest.approx(np.var(x, ddof=1), rel=1e-5)  # N, not N - 1
