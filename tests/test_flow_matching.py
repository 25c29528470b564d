"""Flow matching (genmodels/families/flow_matching.py): the paths' velocities are their time
derivatives, the marginal velocity of Gaussian data carries noise to the data and scores it
exactly through the ODE, config errors, and a smoke run."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genmodels import families, trainer
from genmodels.config import ConfigError
from genmodels.families import flow_matching as fm
from genmodels.nn import ode
from tests import helpers


@pytest.mark.parametrize('kind', fm.PATHS)
def test_each_paths_velocity_is_its_time_derivative(kind):
    config = helpers.smoke_config('fm_toy2d', None, {'model.path': kind})
    k0, k1 = jax.random.split(jax.random.key(0))
    x0, x1 = jax.random.normal(k0, (5, 2, 1, 1)), jax.random.normal(k1, (5, 2, 1, 1))
    t = jnp.linspace(0.05, 0.95, 5)
    (xt, u), (dxt, _) = jax.jvp(lambda s: fm.path(config, x0, x1, s), (t,), (jnp.ones(5),))
    np.testing.assert_allclose(u, dxt, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fm.path(config, x0, x1, jnp.zeros(5))[0], x0, atol=1e-6)
    np.testing.assert_allclose(fm.path(config, x0, x1, jnp.ones(5))[0], x1, atol=1e-6)


def test_the_marginal_velocity_of_gaussian_data_samples_and_scores_it_exactly():
    """Data N(m, s^2) per dimension, linear path: x_t ~ N(t m, (1 - t)^2 + t^2 s^2) and the
    marginal velocity E[x1 - x0 | x_t] = m + (t s^2 - (1 - t)) (x - t m) / var_t. Its ODE from
    N(0, I) at t = 0 must give the data at t = 1, and the likelihood its log-density."""
    m, s = jnp.array([1.5, -0.5]), jnp.array([0.5, 2.0])

    def velocity(x, t):
        var = (1 - t) ** 2 + t ** 2 * s ** 2
        return m + (t * s ** 2 - (1 - t)) * (x - t * m) / var

    z = jax.random.normal(jax.random.key(1), (20_000, 2))
    x, nfe = ode.integrate(velocity, z, 0.0, 1.0, 40, 'rk4')
    np.testing.assert_allclose(x.mean(0), m, atol=0.05)
    np.testing.assert_allclose(x.std(0), s, rtol=0.03)
    points = jnp.array([[1.0, 0.0], [2.0, -3.0]])
    base = lambda v: jnp.sum(jax.scipy.stats.norm.logpdf(v), -1)  # noqa: E731
    log_p, _, _ = ode.log_likelihood(velocity, points, 1.0, 0.0, base, 40, 'rk4')
    want = stats.norm(np.asarray(m), np.asarray(s)).logpdf(np.asarray(points)).sum(-1)
    np.testing.assert_allclose(log_p, want, atol=1e-3)
    assert nfe == 160


def test_bad_settings_are_config_errors():
    for key, value, text in (('sampler.name', 'leapfrog10', 'unknown ODE sampler'),
                             ('model.path', 'spiral', 'model.path must be one of'),
                             ('model.logit_std', 0.0, 'logit_std must be positive'),
                             ('model.architecture', 'unet', 'toy data are points')):
        config = helpers.smoke_config('fm_toy2d', None, {key: value})
        with pytest.raises(ConfigError, match=text):
            families.validated(config)


def test_a_toy_smoke_run_scores_and_samples(tmp_path):
    config = helpers.smoke_config('fm_toy2d', None, helpers.SHORT_RUN,
                                  {'model.time_distribution': 'logit_normal',
                                   'train.num_steps': 12, 'eval.max_examples': 64,
                                   'eval.num_samples': 64})
    result = trainer.train_and_evaluate(config, str(tmp_path / 'w'))
    assert result['nll_divergence'] == 'exact' and result['sampler_nfe'] == 4
    assert np.isfinite(result['nll_nats']) and result['nll_std_error_nats'] > 0
    assert math.isclose(result['kl_estimate_nats'],
                        result['nll_nats'] - result['true_nll_nats'], rel_tol=1e-6)
