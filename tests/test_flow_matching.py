"""Flow matching (genmodels/families/flow_matching/): the paths' velocities are their time
derivatives, the marginal velocity of Gaussian data carries noise to the data and scores it
exactly through the ODE, config errors, and a smoke run."""

import itertools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genmodels import data as data_lib, evaluation, families, trainer
from genmodels.config import ConfigError
from genmodels.families import flow_matching as fm
from genmodels.families.flow_matching import paths as fm_paths, reflow as fm_reflow
from genmodels.nn import edm as edm_lib, ode
from tests import helpers
from tests.test_trainer import Killed, kill_after


@pytest.mark.parametrize('kind', fm.PATHS)
def test_each_paths_velocity_is_its_time_derivative(kind):
    config = helpers.smoke_config('fm_toy2d', None, {'model.path': kind})
    k0, k1 = jax.random.split(jax.random.key(0))
    x0, x1 = jax.random.normal(k0, (5, 2, 1, 1)), jax.random.normal(k1, (5, 2, 1, 1))
    t = jnp.linspace(0.05, 0.95, 5)
    (xt, u), (dxt, _) = jax.jvp(lambda s: fm_paths.path(config, x0, x1, s), (t,), (jnp.ones(5),))
    np.testing.assert_allclose(u, dxt, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fm_paths.path(config, x0, x1, jnp.zeros(5))[0], x0, atol=1e-6)
    np.testing.assert_allclose(fm_paths.path(config, x0, x1, jnp.ones(5))[0], x1, atol=1e-6)


def _gaussian_velocity(m, s):
    """The marginal velocity of data N(m, s^2) per dimension on the linear path from N(0, I):
    x_t ~ N(t m, (1 - t)^2 + t^2 s^2) and
    E[x1 - x0 | x_t] = m + (t s^2 - (1 - t)) (x - t m) / var_t.
    Its flow is affine: x_0 = z goes to m + s z at t = 1."""
    def velocity(x, t):
        var = (1 - t) ** 2 + t ** 2 * s ** 2
        return m + (t * s ** 2 - (1 - t)) * (x - t * m) / var
    return velocity


def test_the_marginal_velocity_of_gaussian_data_samples_and_scores_it_exactly():
    """Data N(m, s^2) per dimension, linear path (_gaussian_velocity): its ODE from N(0, I) at
    t = 0 must give the data at t = 1, and the likelihood its log-density."""
    m, s = jnp.array([1.5, -0.5]), jnp.array([0.5, 2.0])
    velocity = _gaussian_velocity(m, s)

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


@pytest.mark.parametrize('kind', fm.PATHS)
def test_spaced_grids_run_from_noise_to_data_at_edms_levels(kind):
    """karras: the inner points sit at EDM's levels (nn/edm.karras_sigmas over steps + 1 levels)
    of the path's noise-to-signal ratio; logsnr: evenly in log of it; shift3: 3 times the ratio of
    equal steps; every grid from t = 0 to 1."""
    config = helpers.smoke_config('fm_toy2d', None, {'model.path': kind})
    steps = 8
    nsr = {'linear': lambda t: (1 - t) / t, 'cosine': lambda t: 1 / np.tan(np.pi * t / 2)}[kind]
    for spacing in ('uniform', 'karras', 'logsnr', 'shift3', 'shift0.5'):
        t = fm_paths.time_grid(config, steps, spacing)
        assert t.shape == (steps + 1,) and t[0] == 0.0 and t[-1] == 1.0
        assert np.all(np.diff(t) > 0)
    karras = fm_paths.time_grid(config, steps, 'karras')[1:-1].astype(np.float64)
    want = edm_lib.karras_sigmas(steps + 1, fm_paths.SIGMA_MIN, fm_paths.SIGMA_MAX,
                                 fm_paths.RHO)[1:-2]
    np.testing.assert_allclose(nsr(karras), want, rtol=1e-4)
    log_nsr = np.log(nsr(fm_paths.time_grid(config, steps, 'logsnr')[1:-1].astype(np.float64)))
    np.testing.assert_allclose(np.diff(log_nsr), np.diff(log_nsr)[0], rtol=1e-3)
    u = np.linspace(0, 1, steps + 1)
    np.testing.assert_allclose(fm_paths.time_grid(config, steps, 'uniform'), u, atol=1e-7)
    np.testing.assert_allclose(fm_paths.time_grid(config, steps, 'shift1'), u, atol=1e-6)
    shifted = fm_paths.time_grid(config, steps, 'shift3')[1:-1].astype(np.float64)
    np.testing.assert_allclose(nsr(shifted), 3 * nsr(u[1:-1]), rtol=1e-4)
    if kind == 'linear':  # Esser et al.'s form of the shift
        np.testing.assert_allclose(shifted, u[1:-1] / (u[1:-1] + 3 * (1 - u[1:-1])), rtol=1e-6)


def test_heun_on_a_spaced_grid_carries_gaussian_noise_to_the_data_at_second_order():
    """On the affine Gaussian flow, Heun's error over the karras grid falls about 4x when the steps
    double, and the likelihood over the reversed grid equals the closed form. Equal steps given as
    a grid match the equal-step scan."""
    m, s = jnp.array([1.5, -0.5]), jnp.array([0.5, 2.0])
    velocity = _gaussian_velocity(m, s)
    z = jax.random.normal(jax.random.key(1), (512, 2))
    config = helpers.smoke_config('fm_toy2d', None)
    errors = []
    for steps in (8, 16, 32):
        grid = fm_paths.time_grid(config, steps, 'karras')
        x, nfe = ode.integrate(velocity, z, 0.0, 1.0, steps, 'heun', times=grid)
        errors.append(float(jnp.max(jnp.abs(x - (m + s * z)))))
        assert nfe == 2 * steps
    assert 3.0 < errors[0] / errors[1] < 5.0 and 3.0 < errors[1] / errors[2] < 5.0, errors
    grid = fm_paths.time_grid(config, 10, 'uniform')
    np.testing.assert_allclose(ode.integrate(velocity, z, 0.0, 1.0, 10, 'heun', times=grid)[0],
                               ode.integrate(velocity, z, 0.0, 1.0, 10, 'heun')[0], atol=1e-5)
    points = jnp.array([[1.0, 0.0], [2.0, -3.0]])
    base = lambda v: jnp.sum(jax.scipy.stats.norm.logpdf(v), -1)  # noqa: E731
    method, steps, times = fm_paths.fixed_step_grid(config, 'rk420_karras', 1.0, 0.0)
    assert times[0] == 1.0 and times[-1] == 0.0
    log_p, _, _ = ode.log_likelihood(velocity, points, 1.0, 0.0, base, steps, method, times=times)
    want = stats.norm(np.asarray(m), np.asarray(s)).logpdf(np.asarray(points)).sum(-1)
    np.testing.assert_allclose(log_p, want, atol=1e-3)


def test_a_names_spacing_or_the_sections_reaches_the_solver():
    """'euler3_logsnr' and sampler.spacing='logsnr' draw the same samples, unlike equal steps;
    a name's ending wins over the section."""
    assert fm_paths.parse_sampler('heun10_karras') == ('heun', 10, 'karras')
    assert fm_paths.parse_sampler('rk45') == ('rk4', 5, '')
    assert fm_paths.parse_sampler('euler10_shift2.5') == ('euler', 10, 'shift2.5')
    config = helpers.smoke_config('fm_toy2d', None)
    data_lib.dataset_info(config.data)
    params = fm.init(config, jax.random.key(1), {'image': jnp.zeros((1, 2, 1, 1))})['params']

    def draw(name, spacing='uniform'):
        variant = helpers.smoke_config('fm_toy2d', None, {'sampler.spacing': spacing})
        return np.asarray(fm.sample_with_nfe(variant, params, jax.random.key(2), 16, name=name)[0])

    named, by_section = draw('euler3_logsnr'), draw('euler3', 'logsnr')
    np.testing.assert_array_equal(named, by_section)
    assert not np.allclose(named, draw('euler3'), atol=1e-4)
    np.testing.assert_array_equal(draw('euler3_uniform', 'logsnr'), draw('euler3'))


def test_bad_settings_are_config_errors():
    for key, value, text in (('sampler.name', 'leapfrog10', 'unknown ODE sampler'),
                             ('sampler.name', 'heun10_spiral', 'ending after _ must be uniform'),
                             ('sampler.name', 'dopri5_karras', 'takes no spacing'),
                             ('sampler.name', 'euler10_shift0', 'ending after _ must be'),
                             ('sampler.spacing', 'even', 'sampler.spacing: spacing'),
                             ('sampler.spacing', 'shift', 'shift<S> with S > 0'),
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


def test_the_exact_ot_coupling_pairs_the_batch_at_the_least_total_cost():
    config = helpers.smoke_config('fm_toy2d', None, {'objective': 'ot_cfm'})
    k0, k1 = jax.random.split(jax.random.key(2))
    x0, x1 = jax.random.normal(k0, (6, 2, 1, 1)), 3 + jax.random.normal(k1, (6, 2, 1, 1))
    paired = fm_paths.couple(config, x0, x1, jax.random.key(0))
    total = lambda a: float(jnp.sum((a - x1) ** 2))  # noqa: E731
    best = min(total(x0[np.array(p)]) for p in itertools.permutations(range(6)))
    assert total(paired) == pytest.approx(best, rel=1e-6)
    assert sorted(map(tuple, np.asarray(paired).reshape(6, 2))) == sorted(
        map(tuple, np.asarray(x0).reshape(6, 2)))
    config.loss.ot_method = 'sinkhorn'
    drawn = fm_paths.couple(config, x0, x1, jax.random.key(0))
    assert all(any(np.array_equal(d, x) for x in np.asarray(x0)) for d in np.asarray(drawn))


def test_guided_velocity_is_uncond_plus_scale_times_the_difference():
    config = helpers.smoke_config('fm_toy2d', None, {'model.conditional': True,
                                                     'sampler.guidance_scale': 3.0})
    families.validated(config)
    x = jax.random.normal(jax.random.key(0), (4, 2, 1, 1))
    params = fm.init(config, jax.random.key(1), {'image': x})['params']
    labels = jnp.zeros((4,), jnp.int32)
    guided = fm.make_velocity(config, params, labels)(x, 0.3)
    cond = fm.make_velocity(config, params, labels, guidance_scale=1.0)(x, 0.3)
    uncond = fm.make_velocity(config, params, None)(x, 0.3)
    np.testing.assert_allclose(guided, uncond + 3.0 * (cond - uncond), rtol=1e-5, atol=1e-6)
    assert not np.allclose(cond, uncond)  # the class embedding changes the velocity


def test_the_source_toy_scores_through_its_own_density():
    """With zero velocity the flow is the identity, so log p(x) is the source's log-density."""
    config = helpers.smoke_config('fm_toy2d', None)
    x = jax.random.normal(jax.random.key(0), (5, 2, 1, 1)) * 3
    params = jax.tree.map(jnp.zeros_like, fm.init(config, jax.random.key(1), {'image': x})['params'])
    got = fm.log_likelihood(config, params, {'image': x, 'index': jnp.arange(5)},
                            jax.random.key(2))
    want = data_lib.toy_distribution('toy_eight_gaussians').log_prob(x.reshape(5, 2))
    np.testing.assert_allclose(got, want, rtol=1e-5)


OT_RUN = {**helpers.FM_OT_TOY, 'eval.samplers': ('euler1',)}


def test_ot_cfm_resumes_bit_for_bit_and_reports_w2_per_solver(tmp_path):
    config = helpers.smoke_config('fm_toy2d', None, OT_RUN)
    straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
    first = trainer.train_and_evaluate(config, straight)
    with pytest.raises(Killed):
        trainer.train_and_evaluate(config, resumed, iterator_hook=kill_after(5))
    second = trainer.train_and_evaluate(config, resumed)
    assert first == second
    assert first['sampler_nfe_euler1'] == 1 and first['sampler_nfe_euler4'] == 4
    assert 0 < first['w2_euler4'] < 20 and 0 < first['w2_euler1'] < 20
    assert 0 < first['w2_data_floor'] < first['w2_euler1']


def test_reflow_trains_on_its_teachers_pairs_made_once(tmp_path):
    teacher = str(tmp_path / 'teacher')
    trainer.train_and_evaluate(helpers.smoke_config('fm_toy2d', None, OT_RUN), teacher)
    config = helpers.smoke_config('fm_toy2d', None, OT_RUN, {
        'objective': 'reflow', 'loss.reflow_teacher': teacher, 'loss.reflow_pairs': 96,
        'loss.reflow_solver': 'euler3'})
    student = str(tmp_path / 'student')
    with pytest.raises(Killed):
        trainer.train_and_evaluate(config, student, iterator_hook=kill_after(5))
    saved = np.load(os.path.join(student, fm_reflow.PAIRS_FILE))
    assert saved['source'].shape == saved['image'].shape == (96, 2, 1, 1)
    # The pairs are the teacher's ODE (3 Euler steps) from its own source's draws.
    t_config, state, _ = evaluation.restore(teacher)
    want, _ = fm.integrate(t_config, fm.make_velocity(t_config, state['ema_params']),
                           jnp.asarray(saved['source']), 0.0, 1.0, 'euler3')
    np.testing.assert_allclose(saved['image'], want, rtol=1e-5, atol=1e-5)
    mtime = os.path.getmtime(os.path.join(student, fm_reflow.PAIRS_FILE))
    result = trainer.train_and_evaluate(config, student)  # resumes on the same pairs
    assert os.path.getmtime(os.path.join(student, fm_reflow.PAIRS_FILE)) == mtime
    assert np.isfinite(result['nll_nats'])
    bad = helpers.smoke_config('fm_toy2d', None, OT_RUN, {
        'objective': 'reflow', 'loss.reflow_teacher': str(tmp_path / 'none')})
    with pytest.raises(FileNotFoundError, match='does not exist'):
        trainer.train_and_evaluate(bad, str(tmp_path / 'bad'))
    assert not os.path.exists(tmp_path / 'bad')


def test_each_eval_sampler_reports_its_nfe_dopri5_included(monkeypatch):
    """The per-solver NFE of eval.samplers, dopri5's (a traced count) included, with the sample
    metrics themselves stubbed out (they need an image dataset's classifier)."""
    config = helpers.smoke_config('fm_toy2d', None, {'eval.batch_size': 8,
                                                     'eval.samplers': ('euler1', 'dopri5')})
    data_lib.dataset_info(config.data)  # the toy's splits, drawn once outside any jit (cached)
    x = jnp.zeros((1, 2, 1, 1))
    params = fm.init(config, jax.random.key(1), {'image': x})['params']
    drawn = []

    def fake_per_sampler(config, names, make_batch, rng):
        drawn.extend(jax.jit(make_batch(n))(rng).shape for n in names)
        return {}

    monkeypatch.setattr(fm.sample_quality, 'per_sampler', fake_per_sampler)
    out = fm._sampler_metrics(config, params, jax.random.key(0))
    assert drawn == [(8, 2, 1, 1)] * 2
    assert out['sampler_nfe_euler1'] == 1 and isinstance(out['sampler_nfe_dopri5'], int)
    assert out['sampler_nfe_dopri5'] >= 6  # at least one accepted step of 6 new evaluations
