"""Score-matching family against the Gaussian oracle: on data N(mu, S) the perturbed density is
N(mu, S + sigma^2 I), so the optimal score is -(S + sigma^2 I)^-1 (x - mu) in closed form.
Denoising score matching must recover it, and annealed Langevin dynamics with it must reproduce
the data's mean and covariance; then the image sampler, a smoke run through the trainer, and the
config's one-line errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import score_mnist, score_toy2d
from genmodels import config as config_lib, evaluation, families, trainer
from genmodels.families import score
from genmodels.nn import ode
from tests.helpers import jitted_init
from tests.test_trainer import read_metrics

M = jnp.array([0.5, -0.3])
L = jnp.array([[0.6, 0.0], [0.3, 0.4]])
S = L @ L.T   # eigenvalues 0.49 and 0.12


def gaussian_score(x, sigma):
    """grad log N(x; M, S + sigma^2 I) for x [B, 2] or [B, 2, 1, 1] (the family's toy shape)."""
    flat = x.reshape(len(x), 2)
    precision = jnp.linalg.inv(S + sigma ** 2 * jnp.eye(2))
    return (-(flat - M) @ precision).reshape(x.shape)


@pytest.mark.parametrize('sigma', [0.3, 1.0, 3.0])
def test_dsm_minimiser_on_gaussian_data_is_the_closed_form_score(sigma):
    """The DSM loss of a score linear in x, s(x) = A x + b, is quadratic in (A, b): one Newton step
    from 0 lands on its minimiser over 200,000 samples, which must be A = -(S + sigma^2 I)^-1,
    b = (S + sigma^2 I)^-1 mu. Measured relative errors: 0.1-1.3% at 100,000 samples."""
    n = 200_000
    kx, kz = jax.random.split(jax.random.key(0))
    x = M + jax.random.normal(kx, (n, 2)) @ L.T
    z = jax.random.normal(kz, (n, 2))

    def loss(theta):
        a, b = theta[:4].reshape(2, 2), theta[4:]
        return jnp.mean(score.dsm_loss(lambda y, s: y @ a.T + b, x, sigma, z))

    hessian = jax.hessian(loss)(jnp.zeros(6))
    assert np.linalg.eigvalsh(np.asarray(hessian)).min() > 0  # convex: a unique minimiser
    theta = -jnp.linalg.solve(hessian, jax.grad(loss)(jnp.zeros(6)))
    precision = jnp.linalg.inv(S + sigma ** 2 * jnp.eye(2))
    exact = jnp.concatenate([(-precision).ravel(), precision @ M])
    rel = lambda u, v: float(jnp.linalg.norm(u - v) / jnp.linalg.norm(v))  # noqa: E731
    assert rel(theta[:4], exact[:4]) < 0.03 and rel(theta[4:], exact[4:]) < 0.03
    # The closed form scores lower than a 10% error in either direction.
    for factor in (0.9, 1.1):
        assert loss(exact) < loss(exact.at[:4].multiply(factor))
        assert loss(exact) < loss(exact.at[4:].multiply(factor))


def test_annealed_langevin_with_the_closed_form_score_reproduces_the_gaussian():
    """The toy config's ladder (3 -> 0.01, 100 levels) and sampler (eps 2e-5, 20 steps a level,
    final denoising) on 20,000 chains: mean and covariance within 0.02, about 4 standard errors
    (the covariance entries' is at most 0.005 here); the measured error was 0.004. Langevin at
    sigma_L alone for as many steps does not get there: annealing is what mixes."""
    config = score_toy2d.get_config()
    s = config.sampler
    ladder = score.sigmas(config)
    x0 = float(ladder[0]) * jax.random.normal(jax.random.key(1), (20_000, 2, 1, 1))
    run = jax.jit(lambda levels: score.annealed_langevin(
        gaussian_score, x0, levels, s.step_size, s.steps_per_level, jax.random.key(2),
        denoise=s.denoise))
    x = np.asarray(run(ladder)).reshape(-1, 2)
    np.testing.assert_allclose(x.mean(0), M, atol=0.02)
    np.testing.assert_allclose(np.cov(x.T), S, atol=0.02)
    # The same number of steps, all at sigma_L: alpha = eps, so the chain barely leaves x0.
    frozen = np.asarray(run(np.full_like(ladder, ladder[-1]))).reshape(-1, 2)
    assert np.abs(np.cov(frozen.T) - S).max() > 1.0


def test_probability_flow_with_the_closed_form_score_samples_and_scores_the_gaussian():
    """With the exact score of N(M, S) the flow carries N(M, S + sigma^2 I) from sigma to sigma':
    from the exact marginal at sigma_max it reaches the data's moments, and the log-likelihood
    through it from sigma_min (base: the marginal at sigma_max) is the marginal's at sigma_min."""
    lo, hi = 0.01, 3.0
    field = score.probability_flow(gaussian_score)
    chol = jnp.linalg.cholesky(S + hi ** 2 * jnp.eye(2))
    start = (M + jax.random.normal(jax.random.key(1), (20_000, 2)) @ chol.T).reshape(-1, 2, 1, 1)
    end, nfe = ode.integrate(field, start, np.log(hi), np.log(lo), 50, 'heun')
    x = np.asarray(end).reshape(-1, 2)
    np.testing.assert_allclose(x.mean(0), M, atol=0.02)
    np.testing.assert_allclose(np.cov(x.T), S + lo ** 2 * np.eye(2), atol=0.01)
    assert nfe == 100

    def marginal(sigma):
        return lambda z: jax.scipy.stats.multivariate_normal.logpdf(
            z.reshape(len(z), 2), M, S + sigma ** 2 * jnp.eye(2))

    points = start[:64] / 3.0
    log_p, _, _ = ode.log_likelihood(field, points, np.log(lo), np.log(hi), marginal(hi), 100,
                                     'rk4')
    np.testing.assert_allclose(log_p, marginal(lo)(points), atol=1e-4)


def test_sampler_keeps_the_chain_and_clips_images(data_dir):
    """The image sampler returns the data's value range and `keep` evenly spaced chain states,
    the first from the top of the ladder (spread like sigma_1)."""
    config = score_mnist.get_config('smoke')
    config.data.data_dir = data_dir
    # A one-level U-Net: compiling the default one inside the scan takes half a minute.
    config.model.channels, config.model.channel_mults = 8, (1,)
    config.model.attention_resolutions = ()
    example = {'image': np.zeros((1, 28, 28, 1), np.float32), 'index': np.zeros(1, np.int32)}
    params = jitted_init(score, config, jax.random.key(0), example)['params']
    x, trace = jax.jit(lambda key: score.sample(config, params, key, 3, keep=4))(
        jax.random.key(1))
    assert x.shape == (3, 28, 28, 1) and trace.shape == (4, 3, 28, 28, 1)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(jnp.std(trace[0])) > 0.5 * config.model.sigma_max


def test_toy_smoke_run_reports_finite_dsm_losses_and_learns(tmp_path, data_dir):
    config = score_toy2d.get_config('smoke')
    config.data.data_dir = data_dir
    # Enough plain steps to see the loss fall: no warm-up, no moving average.
    config.train.num_steps = 100
    config.train.log_every = 20
    config.optimizer.warmup_steps = 0
    config.train.ema_rate = 0.0
    config.train.figures_every = 0
    workdir = str(tmp_path / 'score')
    result = trainer.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, 'eval.json')) as f:
        saved = json.load(f)
    keys = ('dsm_loss', 'dsm_loss_sigma_min', 'dsm_loss_sigma_max', 'dsm_loss_q0', 'dsm_loss_q3',
            'samples_true_nll_nats', 'true_nll_nats')
    for key in keys:
        assert np.isfinite(saved[key]) and saved[key] == result[key], key
    assert saved['family'] == 'score' and not any(k.startswith('nll') for k in saved)
    losses = [m['loss'] for m in read_metrics(workdir)]
    assert losses[-1] < 0.9 * losses[0]
    # Below the zero score's D / 2 = 1 (2D points): the large sigmas are easy to learn.
    assert saved['dsm_loss'] < 1.0 and saved['dsm_loss_sigma_max'] < 0.5
    assert sorted(os.listdir(os.path.join(workdir, 'figures'))) == ['samples.png',
                                                                     'score_field.png']
    # eval.py --set: the probability-flow sampler and likelihood on the same workdir.
    again = evaluation.evaluate_workdir(workdir, overrides={'sampler.ode_solver': 'heun10',
                                                    'eval.ode_likelihood_solver': 'rk410'})
    assert again['ode_nll_nfe'] == 40 and again['dsm_loss'] == saved['dsm_loss']
    assert abs(again['ode_nll_nats'] - saved['true_nll_nats']) < 3.0
    assert np.isfinite(again['samples_true_nll_nats'])
    assert again['samples_true_nll_nats'] != saved['samples_true_nll_nats']


@pytest.mark.parametrize('key,value,message', [
    ('model.sigma_min', 3.0, 'sigma_min < model.sigma_max'),
    ('model.sigma_min', 0.0, 'sigma_min < model.sigma_max'),
    ('model.num_scales', 1, 'num_scales must be at least 2'),
    ('sampler.step_size', 2e-4, 'diverge'),
    ('sampler.steps_per_level', 0, 'steps_per_level must be positive'),
    ('eval.loss_levels', 1, 'eval.loss_levels'),
    ('model.architecture', 'unet', 'toy data are points'),
])
def test_bad_configs_are_one_line_errors(key, value, message):
    config = score_toy2d.get_config()
    section, name = key.split('.')
    config[section][name] = value
    with pytest.raises(config_lib.ConfigError, match=message) as error:
        families.validated(config)
    assert '\n' not in str(error.value)


def test_sampler_settings_may_change_on_an_existing_workdir():
    keys = families.resumable_keys(families.get('score'))
    assert {'sampler.step_size', 'sampler.steps_per_level', 'sampler.denoise'} <= set(keys)
    assert not any(k.startswith('model.') for k in keys)
