"""EDM family: the preconditioning's defining identities, the Karras levels, the samplers and the
probability-flow likelihood against the exact denoiser of Gaussian data; a short run through the
trainer (resume bit for bit, evaluation settings changed on the workdir)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genmodels import config as config_lib, evaluation, families, trainer
from genmodels.nn import edm, ode
from tests.helpers import EDM_TOY, smoke_config
from tests.test_trainer import Killed, kill_after, read_metrics, restore_params

M = np.array([0.5, -1.0], np.float32)                       # Gaussian data N(M, S) in 2D
S = np.array([[1.0, 0.6], [0.6, 0.8]], np.float32)

def oracle(x, sigma):
    """The exact denoiser of N(M, S): E[x_0 | x] = M + S (S + sigma^2 I)^-1 (x - M)."""
    flat = x.reshape(len(x), 2)
    gain = S @ jnp.linalg.inv(S + sigma ** 2 * jnp.eye(2))
    return (M + (flat - M) @ gain.T).reshape(x.shape)


@pytest.mark.parametrize('sigma_data', [0.5, 2.0])
def test_preconditioning_gives_unit_variance_input_and_target(sigma_data):
    """For data of standard deviation sigma_data, at every sigma: Var(c_in (x_0 + sigma n)) = 1 and
    Var((x_0 - c_skip (x_0 + sigma n)) / c_out) = 1, measured on 200,000 draws; and the loss weight
    is 1 / c_out^2, so lambda || D - x_0 ||^2 = || F - target ||^2."""
    sigmas = np.geomspace(0.002, 80.0, 9).astype(np.float32)
    x0 = sigma_data * jax.random.normal(jax.random.key(0), (200_000,))
    n = jax.random.normal(jax.random.key(1), (200_000,))
    for sigma in sigmas:
        c = edm.preconditioning(sigma, sigma_data)
        x = x0 + sigma * n
        np.testing.assert_allclose(jnp.var(c.c_in * x), 1.0, rtol=0.01)
        np.testing.assert_allclose(jnp.var((x0 - c.c_skip * x) / c.c_out), 1.0, rtol=0.01)
        np.testing.assert_allclose(edm.loss_weight(sigma, sigma_data), 1.0 / c.c_out ** 2,
                                   rtol=1e-5)
        np.testing.assert_allclose(c.c_noise, math.log(sigma) / 4, rtol=1e-6)


def test_karras_levels():
    levels = edm.karras_sigmas(18, 0.002, 80.0, 7.0)
    assert levels.shape == (19,) and levels[-1] == 0.0
    np.testing.assert_allclose(levels[[0, -2]], [80.0, 0.002], rtol=1e-5)
    assert np.all(np.diff(levels) < 0)
    # rho = 1 spaces the levels evenly; rho = 7 crowds them at the low end
    np.testing.assert_allclose(np.diff(edm.karras_sigmas(5, 1.0, 9.0, 1.0)[:-1]), -2.0, rtol=1e-6)
    np.testing.assert_allclose(edm.karras_sigmas(1, 0.002, 80.0, 7.0), [80.0, 0.0])
    assert edm.parse_sampler('heun18') == (True, 18) and edm.parse_sampler('euler5') == (False, 5)
    assert edm.num_evaluations(True, 18) == 35 and edm.num_evaluations(False, 35) == 35
    for bad in ('heun', 'heun0', 'rk4', 'dpmpp2m10'):
        with pytest.raises(ValueError, match='euler<N> or heun<N>'):
            edm.parse_sampler(bad)


def _matrix_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    return v @ np.diag(np.sqrt(w)) @ v.T


def _run(x, num_steps, second_order, churn=0.0):
    levels = edm.karras_sigmas(num_steps, 0.002, 80.0, 7.0)
    out = jax.jit(lambda x: edm.sample(oracle, x, levels, jax.random.key(4),
                                       second_order=second_order, churn=churn, s_tmin=0.05,
                                       s_tmax=50.0))(x)
    return np.asarray(out).reshape(-1, 2)


def test_samplers_with_the_exact_denoiser_follow_the_exact_flow():
    """With the exact denoiser the probability-flow ODE maps x at sigma = 80 to M + S^1/2 (S +
    80^2 I)^-1/2 (x - M) (all functions of S commute). Against that map of the same 20,000
    draws, the covariance error of the samples is the sampler's own. Measured: Heun 0.38 at 10
    levels, 0.092 at 18 (35 NFE) and 0.010 at 50; Euler at 35 NFE 0.14, at 100 0.052."""
    x = 80.0 * jax.random.normal(jax.random.key(3), (20_000, 2, 1, 1))
    exact = M + (np.asarray(x).reshape(-1, 2) - M) @ (
        _matrix_sqrt(S) @ np.linalg.inv(_matrix_sqrt(S + 80.0 ** 2 * np.eye(2)))).T
    error = {run: np.abs(np.cov(_run(x, *run).T) - np.cov(exact.T)).max()
             for run in [(18, True), (50, True), (35, False)]}
    assert error[(50, True)] < 0.02, error
    assert error[(18, True)] < 0.75 * error[(35, False)], error  # second order at equal NFE
    np.testing.assert_allclose(_run(x, 50, True).mean(0), exact.mean(0), atol=0.01)


def test_churn_reaches_the_data_moments():
    """The stochastic sampler (S_churn 10 over 64 levels, gamma 0.16 on the levels in [0.05, 50])
    lands on the data's mean and covariance (measured error 0.022; this draw's own is 0.035)."""
    x = 80.0 * jax.random.normal(jax.random.key(3), (20_000, 2, 1, 1))
    out = _run(x, 64, True, churn=10.0)
    np.testing.assert_allclose(out.mean(0), M, atol=0.03)
    np.testing.assert_allclose(np.cov(out.T), S, atol=0.06)


def test_heun_is_second_order_and_euler_first_on_the_exact_flow():
    """In 1D, data N(0, v): the probability-flow ODE carries x at sigma_0 to
    x sqrt((v + sigma^2) / (v + sigma_0^2)). Doubling the steps divides Heun's error by about 4 and
    Euler's by about 2."""
    v = 0.7

    def denoise(x, sigma):
        return v / (v + sigma ** 2) * x

    x = jnp.linspace(-3.0, 3.0, 7).reshape(7, 1, 1, 1) * 10.0
    exact = x * math.sqrt((v + 0.1 ** 2) / (v + 10.0 ** 2))
    for second_order, ratio in [(True, 4.0), (False, 2.0)]:
        errors = []
        for steps in (8, 16, 32):
            levels = np.geomspace(10.0, 0.1, steps + 1).astype(np.float32)  # no final 0
            out = edm.sample(denoise, x, levels, jax.random.key(0), second_order=second_order)
            errors.append(float(jnp.max(jnp.abs(out - exact))))
        for coarse, fine in zip(errors, errors[1:]):
            assert 0.75 * ratio < coarse / fine < 1.3 * ratio, (second_order, errors)


def test_probability_flow_likelihood_of_gaussian_data_is_the_closed_form():
    """With the exact denoiser the flow carries N(M, S + sigma^2 I) from level to level: through
    the ODE from sigma_min to sigma_max with that marginal as the base, log p is the marginal's
    log-density at sigma_min; with the family's base N(0, sigma_max^2 I) it is within the base's
    mismatch of the data's."""
    field = edm.probability_flow(oracle)
    x = (M + jax.random.normal(jax.random.key(5), (64, 2)) @ np.linalg.cholesky(S).T)
    x = x.reshape(64, 2, 1, 1)
    flat = lambda z: z.reshape(len(z), 2)  # noqa: E731
    lo, hi = 0.002, 80.0

    def marginal(z, sigma):
        return jax.scipy.stats.multivariate_normal.logpdf(flat(z), M, S + sigma ** 2 * np.eye(2))

    log_p, _, _ = ode.log_likelihood(field, x, math.log(lo), math.log(hi),
                                     lambda z: marginal(z, hi), 200, 'rk4')
    np.testing.assert_allclose(log_p, marginal(x, lo), atol=1e-3)
    wide = lambda z: jnp.sum(jax.scipy.stats.norm.logpdf(flat(z), scale=hi), -1)  # noqa: E731
    log_p, _, _ = ode.log_likelihood(field, x, math.log(lo), math.log(hi), wide, 200, 'rk4')
    # the base misses N(M, S + 80^2 I) by about |z . M| / 80^2 + tr(S) / (2 80^2): under 0.05 here
    np.testing.assert_allclose(log_p, marginal(x, 0.0), atol=0.05)


def test_toy_run_resumes_bit_for_bit_and_sampler_settings_change(tmp_path, data_dir):
    config = smoke_config('edm_grid25', data_dir, EDM_TOY)
    straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
    result = trainer.train_and_evaluate(config, straight)
    with pytest.raises(Killed):
        trainer.train_and_evaluate(config, resumed, iterator_hook=kill_after(6))
    trainer.train_and_evaluate(config, resumed)
    for x, y in zip(jax.tree.leaves(restore_params(straight, 8)),
                    jax.tree.leaves(restore_params(resumed, 8)), strict=True):
        np.testing.assert_array_equal(x, y)
    logs = read_metrics(straight)
    assert {'loss', 'grad_norm', 'loss_q0', 'loss_q3'} <= set(logs[-1])
    assert {'modes_covered', 'high_quality_fraction', 'test_loss'} <= set(result)
    assert result['ode_nll_nfe'] == 32 and np.isfinite(result['ode_nll_nats'])
    overrides = evaluation.parse_settings(['sampler.name=euler', 'sampler.num_steps=3',
                                           'sampler.churn=5.0'], straight)
    again = evaluation.evaluate_workdir(straight, overrides=overrides)
    assert again['test_loss'] == result['test_loss']
    assert again['samples_true_nll_nats'] != result['samples_true_nll_nats']


@pytest.mark.parametrize('key,value,message', [
    ('model.sigma_min', 0.0, 'sigma_min'), ('loss.p_std', 0.0, 'p_std'),
    ('sampler.name', 'dpmpp2m', 'sampler.name'), ('eval.samplers', ('ddim50',), 'euler<N>'),
    ('data.scale', '01', "data.scale='-11'")])
def test_bad_edm_configs_are_one_line_errors(data_dir, key, value, message):
    name = 'edm_mnist'
    config = smoke_config(name, data_dir, {key: value})
    with pytest.raises(config_lib.ConfigError, match=message) as e:
        families.validated(config)
    assert '\n' not in str(e.value)


def test_the_benchmark_times_each_named_sampler(data_dir):
    """benchmarks.run's sampler rates take each eval.samplers entry through the family's
    with_sampler (here EDM's Heun over 3 levels and Euler over 2)."""
    from benchmarks import deep
    from genmodels import data
    from genmodels.training import train_state

    config = smoke_config('edm_grid25', data_dir, EDM_TOY, {'eval.samplers': ('heun3', 'euler2')})
    family = families.get('edm')
    variant = family.with_sampler(config, 'euler2')
    assert (variant.sampler.name, variant.sampler.num_steps) == ('euler', 2)
    assert (config.sampler.name, config.sampler.num_steps) == ('heun', 4)  # a copy
    example = train_state.example_batch(data.dataset_info(config.data))
    params = family.init(config, jax.random.key(0), example)['params']
    rates = deep.sample_rates(config, family, params, repeats=1)
    assert set(rates) == {'heun3', 'euler2'} and all(r > 0 for r in rates.values())
