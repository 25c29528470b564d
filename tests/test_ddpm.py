"""DDPM family: the forward process and schedules in closed form, the parameterisations, the
discretised decoder, and the whole family (sampler and bound) against the exact Gaussian oracle;
guidance; short runs through the trainer (resume, TFDS mock CIFAR-10)."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import ddpm_cifar10, ddpm_mnist
from genmodels import data, evaluation, families, trainer
from genmodels.families import ddpm
from genmodels.nn import diffusion, ode, samplers
from tests.helpers import DDPM_TOY, jitted_init, smoke_config
from tests.test_trainer import Killed, kill_after, read_metrics, restore_params

SCHED = diffusion.make_schedule('linear', 1000, 1e-4, 0.02)
AB = jnp.asarray(SCHED.alphas_cumprod, jnp.float32)


def test_schedule_endpoints():
    assert SCHED.betas[0] == pytest.approx(1e-4) and SCHED.betas[-1] == pytest.approx(0.02)
    # ab_T = prod (1 - beta_t) = 4.0e-5: x_T is N(0, I) up to a 0.6% scale of the data.
    assert SCHED.alphas_cumprod[-1] == pytest.approx(4.04e-5, rel=0.01)
    cosine = diffusion.make_schedule('cosine', 1000, 0.0, 0.0)
    assert cosine.alphas_cumprod[-1] < 1e-8 and cosine.betas.max() <= 0.999
    # Nichol & Dhariwal: ab(t) = f(t) / f(0) before clipping; halfway it is cos^2 of about pi/4.
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert cosine.alphas_cumprod[499] == pytest.approx(f(500) / f(0), rel=1e-9)
    for s in (SCHED, cosine):
        assert np.all(np.diff(s.alphas_cumprod) < 0)


def test_q_sample_has_the_closed_form_moments():
    x0 = jnp.array([0.7, -0.4])
    for t in (0, 300, 999):
        eps = jax.random.normal(jax.random.key(t), (200_000, 2))
        x_t = diffusion.q_sample(jnp.broadcast_to(x0, eps.shape), AB[t], eps)
        np.testing.assert_allclose(np.mean(x_t, 0), np.sqrt(AB[t]) * x0, atol=0.006)
        np.testing.assert_allclose(np.var(x_t, 0), 1 - AB[t], rtol=0.01)


def test_posterior_of_any_jump_matches_gaussian_conditioning():
    """q(x_s | x_t, x_0) for s < t from the joint Gaussian of (x_s, x_t) given x_0:
    cov(x_s, x_t) = sqrt(ab_t / ab_s) (1 - ab_s), conditioned on x_t (the respaced chains)."""
    kept = np.array([0, 3, 40, 41, 500, 999])
    chain = diffusion.steps(SCHED, kept)
    ab = SCHED.alphas_cumprod
    for i in range(1, len(kept)):
        s, t = kept[i - 1], kept[i]
        cov = np.sqrt(ab[t] / ab[s]) * (1 - ab[s])
        var = (1 - ab[s]) - cov ** 2 / (1 - ab[t])
        ct = cov / (1 - ab[t])
        c0 = np.sqrt(ab[s]) - ct * np.sqrt(ab[t])  # mean = sqrt(ab_s) x0 + ct (x_t - sqrt(ab_t) x0)
        np.testing.assert_allclose([chain.c0[i], chain.ct[i], chain.var_small[i]], [c0, ct, var],
                                   rtol=2e-5)
    assert chain.c0[0] == 1 and chain.ct[0] == 0 and chain.var_small[0] == 0  # the last step: x0
    np.testing.assert_allclose(diffusion.steps(SCHED, np.arange(1000)).var_large, SCHED.betas,
                               rtol=1e-4)


@pytest.mark.parametrize('prediction', diffusion.PREDICTIONS)
def test_prediction_targets_round_trip(prediction):
    k0, k1 = jax.random.split(jax.random.key(0))
    x0 = jax.random.normal(k0, (5, 3, 3, 1))
    eps = jax.random.normal(k1, (5, 3, 3, 1))
    ab = AB[jnp.array([0, 10, 200, 700, 999])]
    x_t = diffusion.q_sample(x0, ab, eps)
    eps_hat, x0_hat = diffusion.predict(prediction, diffusion.target(prediction, x0, eps, ab),
                                        x_t, ab)
    np.testing.assert_allclose(eps_hat, eps, atol=2e-3)
    np.testing.assert_allclose(x0_hat, x0, atol=2e-3)



def test_min_snr_weights_give_every_target_the_clipped_snr_weighted_x0_loss():
    """The same prediction expressed as eps, x0 or v: each target's squared error times its
    min-SNR-gamma weight is min(SNR, gamma) |x0 - x0_hat|^2 (Hang et al. 2023, Eq. 10)."""
    k = jax.random.split(jax.random.key(0), 3)
    x0, eps, eps_hat = (jax.random.normal(key, (6, 4)) for key in k)
    ab = jnp.asarray(SCHED.alphas_cumprod[np.array([0, 10, 100, 400, 700, 999])], jnp.float32)
    x_t = diffusion.q_sample(x0, ab, eps)
    _, x0_hat = diffusion.predict('eps', eps_hat, x_t, ab)
    v_hat = diffusion.target('v', x0_hat, eps_hat, ab)
    snr = ab / (1 - ab)
    want = jnp.minimum(snr, 5.0) * jnp.sum((x0 - x0_hat) ** 2, -1)
    for prediction, out in (('eps', eps_hat), ('x0', x0_hat), ('v', v_hat)):
        goal = diffusion.target(prediction, x0, eps, ab)
        got = diffusion.min_snr_weight(prediction, ab, 5.0) * jnp.sum((out - goal) ** 2, -1)
        np.testing.assert_allclose(got, want, rtol=2e-3, err_msg=prediction)


@pytest.mark.parametrize('levels', [256, 17])
def test_discretized_decoder_is_a_distribution_over_the_levels(levels):
    x = jnp.linspace(-1.0, 1.0, levels)
    half = 1.0 / (levels - 1)
    for mean, var in ((0.3, 0.01), (-0.99, 1e-4), (0.0, 4.0), (1.0, 1e-6)):
        log_p = diffusion.discretized_gaussian_log_likelihood(x, mean, var, half, -1.0, 1.0)
        assert float(jnp.sum(jnp.exp(log_p))) == pytest.approx(1.0, abs=1e-4)


# ------------------------------------------------------------------------------------------------
# The exact Gaussian oracle: data N(m, S) give x_t ~ N(sqrt(ab) m, ab S + (1 - ab) I), and the
# optimal predictor E[eps | x_t] = sqrt(1 - ab) (ab S + (1 - ab) I)^-1 (x_t - sqrt(ab) m).

M = jnp.array([0.5, -0.3])
L = jnp.array([[0.6, 0.0], [0.3, 0.4]])
S = L @ L.T


def oracle(x, t):
    """denoise(x_t [B, 2, 1, 1], t [B]) -> (eps_hat, x0_hat) of the Bayes-optimal model."""
    a = AB[t][:, None]
    flat = x.reshape(len(x), 2)
    cov = a[:, :, None] * S + (1 - a)[:, :, None] * jnp.eye(2)
    eps = jnp.sqrt(1 - a) * jnp.linalg.solve(cov, (flat - jnp.sqrt(a) * M)[..., None])[..., 0]
    x0 = (flat - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a)
    return eps.reshape(x.shape), x0.reshape(x.shape)


def test_bound_of_the_gaussian_oracle_matches_the_true_nll():
    n = 2000
    x0 = M + jax.random.normal(jax.random.key(1), (n, 2)) @ L.T
    true = -jax.scipy.stats.multivariate_normal.logpdf(x0, M, S)
    gaps = {}
    for variance in diffusion.VARIANCES:
        bound = diffusion.variational_bound(
            SCHED, lambda x, t: oracle(x, t)[1], x0.reshape(n, 2, 1, 1), jnp.arange(n),
            jax.random.key(2), decoder=diffusion.gaussian_log_density, variance=variance)
        gap = np.asarray(bound - true)
        gaps[variance] = (gap.mean(), gap.std() / math.sqrt(n))
    # With beta_t as the reverse variance the bound is tight up to T = 1000's discretisation:
    # measured 0.016 +- 0.02 nats over 2 dimensions. The posterior variance (fixed_small) is
    # too small at large t and costs about a nat (Ho et al. Sec. 4.2 saw the same on images).
    mean, sem = gaps['fixed_large']
    assert abs(mean) < 0.05 + 3 * sem, gaps
    mean, sem = gaps['fixed_small']
    assert mean > 0.5, gaps


def test_probability_flow_likelihood_of_the_gaussian_oracle_is_the_closed_form():
    """With the exact noise prediction of Gaussian data the flow carries each marginal
    N(sqrt(ab) M, ab S + (1 - ab) I) to the next, at fractional timesteps too: the log-likelihood
    through the ODE from s = 0 to T - 1, with the exact marginal at T - 1 as the base, is the
    marginal's log-density at s = 0, and with N(0, I) as the base (as the family scores) it is the
    data's within the prior's mismatch."""
    def marginal_cov(a):
        return a[..., None, None] * S + (1 - a)[..., None, None] * jnp.eye(2)

    def eps_fn(x, s, ab):
        flat = x.reshape(len(x), 2)
        r = flat - jnp.sqrt(ab)[:, None] * M
        eps = jnp.sqrt(1 - ab)[:, None] * jnp.linalg.solve(marginal_cov(ab), r[..., None])[..., 0]
        return eps.reshape(x.shape)

    ab = jnp.asarray(SCHED.alphas_cumprod, jnp.float32)
    field = diffusion.probability_flow(eps_fn, ab)
    x = (M + jax.random.normal(jax.random.key(3), (64, 2)) @ L.T).reshape(64, 2, 1, 1)
    flat = lambda z: z.reshape(len(z), 2)  # noqa: E731
    last = len(ab) - 1

    def base(z):
        return jax.scipy.stats.multivariate_normal.logpdf(
            flat(z), jnp.sqrt(ab[last]) * M, marginal_cov(ab[last]))

    log_p, _, nfe = ode.log_likelihood(field, x, 0.0, float(last), base, 400, 'rk4')
    want = jax.scipy.stats.multivariate_normal.logpdf(flat(x), jnp.sqrt(ab[0]) * M,
                                                      marginal_cov(ab[0]))
    np.testing.assert_allclose(log_p, want, atol=1e-4)
    assert nfe == 1600
    normal = lambda z: jnp.sum(jax.scipy.stats.norm.logpdf(flat(z)), -1)  # noqa: E731
    log_p, _, _ = ode.log_likelihood(field, x, 0.0, float(last), normal, 100, 'rk4')
    true = jax.scipy.stats.multivariate_normal.logpdf(flat(x), M, S)
    np.testing.assert_allclose(log_p, true, atol=0.02)
    # The same flow in log sigma (what the family integrates), in a tenth of the steps. (Here,
    # with data of unit scale, evenly in s does about as well; on images, whose pixels sit far
    # closer together than sigma at s = 0 grows, it does not: docs/results/ddpm.md.)
    warped, tau_data, tau_base = diffusion.in_log_sigma(field, ab)
    log_p, _, _ = ode.log_likelihood(warped, x, tau_data, tau_base, base, 40, 'rk4')
    np.testing.assert_allclose(log_p, want, atol=1e-3)


@pytest.mark.parametrize('kind,num_steps,eta,spacing,tol', [
    ('ancestral', 1000, 0.0, '', 0.015), ('ddim', 1000, 0.0, '', 0.015),
    ('ddim', 50, 0.0, '', 0.03), ('dpmpp2m', 10, 0.0, '', 0.05), ('dpmpp2m', 20, 0.0, '', 0.03),
    ('dpmpp2m', 10, 1.0, '', 0.03), ('dpmpp2m', 35, 1.0, 'karras', 0.04),
    ('heun', 50, 0.0, '', 0.03)])
def test_samplers_with_the_gaussian_oracle_reproduce_its_moments(kind, num_steps, eta, spacing,
                                                                 tol):
    kept = diffusion.kept_timesteps(SCHED, kind, num_steps, spacing)
    chain = diffusion.steps(SCHED, kept)
    assert len(chain.t) == num_steps
    if spacing == 'karras':
        np.testing.assert_array_equal(kept, diffusion.respaced_karras(SCHED.alphas_cumprod,
                                                                      num_steps))
    x_T = jax.random.normal(jax.random.key(3), (20_000, 2, 1, 1))
    x, _ = samplers.run_chain(kind, oracle, x_T, chain, jax.random.key(4),
                              variance='fixed_small', eta=eta)
    x = np.asarray(x).reshape(-1, 2)
    np.testing.assert_allclose(x.mean(0), M, atol=0.015)
    # DDIM's 50 steps measured 0.022 low on the variances: its discretisation error. DPM-Solver++
    # (2M), second order and spaced in log SNR: 0.039 at 10 steps and 0.024 at 20, where DDIM's
    # errors are 0.14 and 0.071 (0.013 is this draw's own error, at 1,000 steps). Its stochastic
    # form (eta 1): 0.020 at 10 steps, where DDIM's with eta 1 is 0.19; on EDM's (Karras) levels
    # 0.065 at 10 steps and 0.029 at 35 (these data have no fine detail for the small levels).
    np.testing.assert_allclose(np.cov(x.T), S, atol=tol)


ZT_SCHED = diffusion.make_schedule('linear', 1000, 1e-4, 0.02, zero_terminal_snr=True)


def zt_oracle(x, t):
    """The Bayes-optimal model on the zero-terminal-SNR schedule, through the posterior mean
    E[x_0 | x_t] = M + sqrt(ab) S cov^-1 (x_t - sqrt(ab) M), which stays finite at ab = 0 (there
    it is M, and eps_hat = x_t)."""
    a = jnp.asarray(ZT_SCHED.alphas_cumprod, jnp.float32)[t][:, None]
    flat = x.reshape(len(x), 2)
    cov = a[:, :, None] * S + (1 - a)[:, :, None] * jnp.eye(2)
    x0 = M + jnp.sqrt(a) * (S @ jnp.linalg.solve(cov, (flat - jnp.sqrt(a) * M)[..., None]))[..., 0]
    eps = (flat - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)
    return eps.reshape(x.shape), x0.reshape(x.shape)


def test_zero_terminal_snr_schedule_ends_at_pure_noise_and_samples_and_scores_the_oracle():
    """Lin et al.'s rescale keeps sqrt(ab_0), ends at ab = 0 exactly, and is an affine map of the
    original sqrt(ab_t); on it the oracle's ancestral and DDIM samples have the data's moments and
    its bound is within a few hundredths of a nat of the true NLL (the prior term is 0)."""
    ab, ab0 = ZT_SCHED.alphas_cumprod, SCHED.alphas_cumprod
    assert ab[-1] == 0.0 and ZT_SCHED.betas[-1] == 1.0 and np.all(np.diff(ab) < 0)
    np.testing.assert_allclose(ab[0], ab0[0], rtol=1e-12)
    slope, intercept = np.polyfit(np.sqrt(ab0), np.sqrt(ab), 1)
    np.testing.assert_allclose(slope * np.sqrt(ab0) + intercept, np.sqrt(ab), atol=1e-12)
    x_T = jax.random.normal(jax.random.key(3), (20_000, 2, 1, 1))
    for kind, num_steps in [('ancestral', 1000), ('ddim', 50)]:
        chain = diffusion.steps(ZT_SCHED, diffusion.kept_timesteps(ZT_SCHED, kind, num_steps))
        x, _ = samplers.run_chain(kind, zt_oracle, x_T, chain, jax.random.key(4),
                                  variance='fixed_small', eta=0.0)
        x = np.asarray(x).reshape(-1, 2)
        assert np.all(np.isfinite(x)), kind
        np.testing.assert_allclose(x.mean(0), M, atol=0.015)
        np.testing.assert_allclose(np.cov(x.T), S, atol=0.03)
    n = 2000
    x0 = M + jax.random.normal(jax.random.key(1), (n, 2)) @ L.T
    bound = diffusion.variational_bound(
        ZT_SCHED, lambda x, t: zt_oracle(x, t)[1], x0.reshape(n, 2, 1, 1), jnp.arange(n),
        jax.random.key(2), decoder=diffusion.gaussian_log_density, variance='fixed_large')
    gap = np.asarray(bound + jax.scipy.stats.multivariate_normal.logpdf(x0, M, S))
    assert abs(gap.mean()) < 0.05 + 3 * gap.std() / math.sqrt(n), (gap.mean(), gap.std())


def test_heun_is_second_order_where_euler_ddim_is_first():
    """On EDM's 50 noise levels, Heun's deterministic samples stay closer to the ODE's solution
    (DDIM over all 1,000 timesteps) than DDIM's Euler steps on the same levels: measured 0.021
    against 0.131, and 0.009 against 0.063 at 100 levels."""
    x_T = jax.random.normal(jax.random.key(3), (2000, 2, 1, 1))
    ref, _ = samplers.run_chain('ddim', oracle, x_T, diffusion.steps(SCHED, np.arange(1000)),
                                jax.random.key(4))
    errors = {}
    for kind in ('ddim', 'heun'):
        chain = diffusion.steps(SCHED, diffusion.respaced_karras(SCHED.alphas_cumprod, 50))
        x, _ = samplers.run_chain(kind, oracle, x_T, chain, jax.random.key(4))
        errors[kind] = float(np.abs(np.asarray(x) - np.asarray(ref)).max())
    assert errors['heun'] < 0.2 * errors['ddim'], errors


def test_ddim_with_eta_one_over_all_steps_is_the_ancestral_chain():
    """Same mean and variance at every step, so with the same noise the paths coincide."""
    chain = diffusion.steps(SCHED, np.arange(1000))
    x_T = jax.random.normal(jax.random.key(3), (64, 2, 1, 1))
    a, _ = samplers.run_chain('ancestral', oracle, x_T, chain, jax.random.key(4),
                              variance='fixed_small')
    d, _ = samplers.run_chain('ddim', oracle, x_T, chain, jax.random.key(4), eta=1.0)
    np.testing.assert_allclose(a, d, atol=1e-4)
    e, _ = samplers.run_chain('ddim', oracle, x_T, chain, jax.random.key(4), eta=0.0)
    assert np.abs(np.asarray(e - a)).max() > 0.1  # eta = 0 is another sampler


# ------------------------------------------------------------------------------------------------
# The family

@pytest.mark.parametrize('objective,prediction,gamma,zero_snr', [
    ('simple', 'x0', 0.0, False), ('simple', 'v', 5.0, True), ('vlb', 'eps', 0.0, False)])
def test_objectives_and_targets_train(objective, prediction, gamma, zero_snr, data_dir):
    """Each objective and target takes finite steps that lower its loss on a fixed batch (v with
    the min-SNR-5 weighting on the zero-terminal-SNR schedule), and the family samples finite
    points from it (with v at SNR 0 the denoiser must read x0 off v: through eps it is 0 / 0)."""
    config = smoke_config('ddpm_grid25', data_dir, DDPM_TOY, {'loss.min_snr_gamma': gamma,
                                                              'model.zero_terminal_snr': zero_snr})
    config.objective, config.model.prediction = objective, prediction
    points = data.load_split(config.data, 'train', 256)['image']
    batch = {'image': jnp.asarray(points), 'label': jnp.zeros(256, jnp.int32),
             'index': jnp.arange(256)}
    state = jitted_init(ddpm, config, jax.random.key(0), batch)
    step = jax.jit(lambda s: ddpm.train_step(config, s, batch, jax.random.key(1)))
    losses = []
    for _ in range(30):
        state, metrics = step(state)
        losses.append(float(metrics['loss']))
    assert np.all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])
    for name in ('ddim4', 'ddim4_eta1'):
        spec = samplers.sampler_spec(config.sampler, name)
        x = ddpm.sample(config, state['params'], jax.random.key(2), 64, spec=spec)
        assert np.all(np.isfinite(np.asarray(x))), name


def test_the_spacing_a_sampler_names_or_the_section_sets_reaches_its_chain(data_dir):
    config = smoke_config('ddpm_grid25', data_dir, DDPM_TOY)
    example = {'image': np.zeros((1, 2, 1, 1), np.float32), 'label': np.zeros(1, np.int32),
               'index': np.zeros(1, np.int32)}
    params = ddpm.init(config, jax.random.key(0), example)['params']

    def draw(name):
        spec = samplers.sampler_spec(config.sampler, name)
        return np.asarray(ddpm.sample(config, params, jax.random.key(1), 16, spec=spec))

    uniform, karras = draw('ddim4_uniform'), draw('ddim4_karras')
    np.testing.assert_array_equal(draw('ddim4'), uniform)  # DDIM's own spacing
    assert not np.allclose(uniform, karras)
    config.sampler.spacing = 'karras'
    np.testing.assert_array_equal(draw('ddim4'), karras)   # the section's spacing ...
    np.testing.assert_array_equal(draw('ddim4_uniform'), uniform)  # ... unless the name sets one


def test_guidance_scale_zero_is_the_unconditional_prediction(data_dir):
    config = smoke_config('ddpm_grid25', data_dir, DDPM_TOY)
    config.model.conditional = True
    example = {'image': np.zeros((1, 2, 1, 1), np.float32), 'label': np.zeros(1, np.int32),
               'index': np.zeros(1, np.int32)}
    params = ddpm.init(config, jax.random.key(0), example)['params']
    x = jax.random.normal(jax.random.key(1), (6, 2, 1, 1))
    t = jnp.array([0, 5, 20, 50, 80, 99])
    labels = jnp.zeros(6, jnp.int32)
    uncond = ddpm.make_denoiser(config, params, None)(x, t)[0]
    cond = ddpm.make_denoiser(config, params, labels, 1.0)(x, t)[0]
    assert np.abs(np.asarray(cond - uncond)).max() > 1e-3  # the label matters
    np.testing.assert_allclose(ddpm.make_denoiser(config, params, labels, 0.0)(x, t)[0], uncond)
    np.testing.assert_allclose(ddpm.make_denoiser(config, params, labels, 2.5)(x, t)[0],
                               uncond + 2.5 * (cond - uncond), atol=1e-5)


def test_toy_run_resumes_bit_for_bit_and_eval_settings_change(tmp_path, data_dir):
    config = smoke_config('ddpm_grid25', data_dir, DDPM_TOY)
    straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
    result = trainer.train_and_evaluate(config, straight)
    with pytest.raises(Killed):
        trainer.train_and_evaluate(config, resumed, iterator_hook=kill_after(6))
    trainer.train_and_evaluate(config, resumed)
    a, b = restore_params(straight, 8), restore_params(resumed, 8)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    logs = read_metrics(straight)
    assert logs == [dict(m, time=n['time'], steps_per_sec=n['steps_per_sec'])
                    for m, n in zip(read_metrics(resumed), logs)]
    assert {'loss', 'grad_norm', 'loss_q0', 'loss_q3'} <= set(logs[-1])
    assert {'modes_covered', 'high_quality_fraction', 'kl_estimate_nats'} <= set(result)
    assert result['nll_timesteps'] == 10 and np.isfinite(result['nll_nats'])
    # eval.py --set changes a sampler or evaluation setting on the trained workdir, nothing else.
    overrides = evaluation.parse_settings(['sampler.name=ddim', 'sampler.num_steps=5',
                                           'eval.nll_timesteps=5',
                                           'eval.ode_likelihood_solver=rk48'], straight)
    assert overrides == {'sampler.name': 'ddim', 'sampler.num_steps': 5, 'eval.nll_timesteps': 5,
                         'eval.ode_likelihood_solver': 'rk48'}
    again = evaluation.evaluate_workdir(straight, overrides=overrides)
    assert again['nll_timesteps'] == 5 and again['nll_nats'] != result['nll_nats']
    assert 'ode_nll_nats' not in result and again['ode_nll_nfe'] == 32
    assert np.isfinite(again['ode_nll_nats']) and again['ode_nll_std_error_nats'] > 0
    for bad, message in [('model.hidden=(4,)', 'use --set section.key=value'),
                         ('sampler.eta=fast', 'sampler.eta is a float')]:
        with pytest.raises(ValueError, match=message):
            evaluation.parse_settings([bad], straight)


def test_cifar10_recipe_runs_on_mock_data(tmp_path):
    """Ho et al.'s recipe through the trainer, made class-conditional with guidance so the
    guided chain (conditional and unconditional halves in one pass) and classes.png run too."""
    config = ddpm_cifar10.get_config('smoke')
    config.model.conditional = True
    config.loss.label_dropout = 0.2
    config.sampler.guidance_scale = 3.0
    config.model.channels = 8
    config.model.channel_mults = (1,)  # levels and attention: tests/test_unet.py
    config.model.num_res_blocks = 1
    config.model.attention_resolutions = ()
    config.train.num_steps = 2
    config.train.batch_size = 8
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    config.train.figures_every = 0
    config.eval.max_examples = 8
    config.eval.num_samples = 10
    config.eval.batch_size = 8
    workdir = str(tmp_path / 'cifar')
    with tfds.testing.mock_data(num_examples=16):
        result = trainer.train_and_evaluate(config, workdir)
    assert result['data_num_levels'] == 256 and np.isfinite(result['nll_bits_per_dim'])
    # No Inception weights were given: the sample metrics are skipped with a note, not faked.
    assert 'sample_metrics_note' in result and 'fid_data_floor' not in result
    for name in ('samples', 'denoising', 'classes'):
        assert os.path.getsize(os.path.join(workdir, 'figures', f'{name}.png')) > 1000
    assert json.load(open(os.path.join(workdir, 'eval.json')))['step'] == 2


def test_conditional_mnist_evaluation_reads_the_labels(monkeypatch, data_dir):
    config = ddpm_mnist.get_config('smoke')
    config.data.data_dir = data_dir
    config.model.conditional = True
    config.model.channels = 4
    config.model.channel_mults = (1,)
    config.model.attention_resolutions = ()
    config.sampler.num_steps = 2
    config.eval.samplers = ()
    config.eval.nll_timesteps = 2
    config.eval.batch_size = 20
    monkeypatch.setattr(ddpm, 'LABEL_SAMPLES', 40)
    example = {'image': np.zeros((1, 28, 28, 1), np.float32), 'label': np.zeros(1, np.int32),
               'index': np.zeros(1, np.int32)}
    params = jitted_init(ddpm, config, jax.random.key(0), example)['params']
    test = {k: v[:20] for k, v in data.load_split(config.data, 'test', 20).items()}
    result = ddpm.evaluate(config, params, test, jax.random.key(1))
    assert sorted(result) == sorted(['nll_nats', 'nll_bits_per_dim', 'nll_timesteps',
                                     'label_accuracy', 'data_binarized', 'data_dequantized',
                                     'data_num_levels', 'data_scale_min', 'data_scale_max'])
    assert 0.0 <= result['label_accuracy'] <= 1.0 and result['data_num_levels'] == 256
    # An untrained network predicts eps = 0: the bound is large but finite, in bits per dimension
    # of the 256-level data.
    assert 1.0 < result['nll_bits_per_dim'] < 100.0


def test_bad_ddpm_configs_are_one_line_errors():
    for mutate, message in [
        (lambda c: setattr(c.sampler, 'guidance_scale', 2.0), 'conditional model'),
        (lambda c: setattr(c.eval, 'samplers', ('ddpm50',)),
         'ancestral<S>, ddim<S>, dpmpp2m<S>, heun<S>, ddim<S>_eta<E> or dpmpp2m<S>_eta<E>'),
        (lambda c: setattr(c.eval, 'samplers', ('ancestral50_eta1',)), 'ddim<S>_eta<E>'),
        (lambda c: setattr(c.data, 'dequantize', True), 'dequantize=False'),
        (lambda c: setattr(c.model, 'prediction', 'score'), 'model.prediction'),
        (lambda c: setattr(c.model, 'zero_terminal_snr', True), "prediction='v'"),
        (lambda c: (setattr(c.model, 'zero_terminal_snr', True), setattr(c.model, 'prediction', 'v'),
                    setattr(c.eval, 'samplers', ('dpmpp2m10',))), 'ancestral or ddim only'),
        (lambda c: (setattr(c.model, 'zero_terminal_snr', True), setattr(c.model, 'prediction', 'v'),
                    setattr(c.eval, 'samplers', ('ddim10_karras',))), 'uniform spacing'),
        (lambda c: setattr(c.sampler, 'spacing', 'even'), 'sampler.spacing must be one of'),
        (lambda c: setattr(c.eval, 'samplers', ('ddim10_even',)), 'optionally ending in _uniform'),
    ]:
        config = ddpm_mnist.get_config()
        mutate(config)
        with pytest.raises(ValueError, match=message):
            families.validated(config)


def test_sampler_specs_parse_with_and_without_eta():
    # None: the config's sampler.eta and sampler.spacing
    assert ddpm.parse_sampler('ancestral1000') == ('ancestral', 1000, None, None)
    assert ddpm.parse_sampler('ddim50') == ('ddim', 50, None, None)
    assert ddpm.parse_sampler('ddim50_eta1') == ('ddim', 50, 1.0, None)
    assert ddpm.parse_sampler('ddim20_eta0.5') == ('ddim', 20, 0.5, None)
    assert ddpm.parse_sampler('dpmpp2m10_eta1_karras') == ('dpmpp2m', 10, 1.0, 'karras')
    assert ddpm.parse_sampler('ancestral20_logsnr') == ('ancestral', 20, None, 'logsnr')
