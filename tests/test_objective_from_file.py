"""An objective named by import path: the beta-TC-VAE of examples/beta_tc_vae.py, checked on its
numbers, trained end to end in both spellings (module and file), and one-line config errors."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from examples import beta_tc_vae
from genmodels import config as config_lib, data, trainer
from genmodels.families import vae
from genmodels.nn import noise
from tests.helpers import VAE, smoke_config
from tests.test_trainer import ROOT, read_metrics

MODULE_SPEC = 'examples.beta_tc_vae:beta_tc_elbo'
FILE_SPEC = os.path.join(ROOT, 'examples', 'beta_tc_vae.py') + ':beta_tc_elbo'

# Jitted as in training (and op-by-op dispatch would cost seconds of compiling per shape).
decompose = jax.jit(beta_tc_vae.decompose, static_argnums=3)


def jitted(objective, config):
    return jax.jit(lambda params, batch, rng, step: objective(config, params, batch, rng, step))


@pytest.fixture(scope='module')
def setup(data_dir):
    """A tiny VAE with the N(0, I) prior (the closed forms below): its initial parameters and one
    real training batch (16 binarised digits)."""
    config = smoke_config('vae_mnist', data_dir, VAE, {'model.prior': 'standard'})
    batch = jax.tree.map(jnp.asarray, next(data.train_iterator(config.data, 16, 0)))
    params = jax.jit(lambda key: vae.init(config, key, batch)['params'])(jax.random.key(0))
    n = data.dataset_info(config.data).num_examples[config.data.train_split]
    return config, params, batch, n


def sampled(config, params, batch, rng):
    """z ~ q(z | x) with the ELBO objective's noise, log q(z | x) - log p(z) done by hand, and
    the reconstruction term log p(x | z)."""
    @jax.jit
    def run(params, batch, rng):
        mean, log_var = vae.encode(config, params, batch['image'])
        eps = noise.normal(rng, batch['index'], (1, mean.shape[-1]))[:, 0]
        z = mean + jnp.exp(0.5 * log_var) * eps
        log_ratio = (jnp.sum(norm.logpdf(z, mean, jnp.exp(0.5 * log_var)), -1)
                     - jnp.sum(norm.logpdf(z), -1))
        recon = vae.log_px_given_z(config, params, batch['image'], vae.decode(config, params, z))
        return z, mean, log_var, log_ratio, recon
    return run(params, batch, rng)


def test_terms_sum_to_the_single_sample_kl_and_loss_is_exact(setup):
    config, params, batch, n = setup
    config = config.copy_and_resolve_references()
    config.loss.beta = 1.0
    rng, step = jax.random.key(3), jnp.asarray(config.loss.kl_warmup_steps)  # warm-up done
    z, mean, log_var, log_ratio, recon = sampled(config, params, batch, rng)
    mi, tc, dwkl = decompose(z, mean, log_var, n)
    # (i) + (ii) + (iii) = log q(z|x) - log p(z) per example, though each is tens of nats.
    np.testing.assert_allclose(mi + tc + dwkl, log_ratio, atol=1e-4, rtol=1e-5)
    assert float(jnp.min(jnp.abs(tc))) > 1.0  # the identity is not 0 = 0
    terms = jitted(beta_tc_vae.beta_tc_elbo, config)(params, batch, rng, step)
    np.testing.assert_allclose(terms.loss, -(recon - log_ratio), atol=1e-3, rtol=1e-5)
    # Same draw as the ELBO objective: its diagnostics are the ELBO's, sample for sample.
    ref = jitted(vae.elbo_objective, config)(params, batch, rng, step)
    for key in ('elbo', 'recon', 'kl'):
        np.testing.assert_allclose(getattr(terms, key), getattr(ref, key), rtol=1e-6, atol=1e-5)
    # The one-sample KL estimate differs from the closed form the ELBO objective uses.
    assert float(jnp.max(jnp.abs(log_ratio - ref.kl))) > 1e-2


def test_against_a_vamp_prior_the_terms_sum_to_the_elbo_objectives_kl(setup):
    """configs/vae_mnist.py's VampPrior: (iii) becomes log prod_d q(z_d) - log p(z) with the
    prior's own log p, so the three terms sum, sample for sample, to the ELBO objective's
    one-sample KL, and with beta = 1 the two losses are one."""
    config, _, batch, _ = setup
    config = config.copy_and_resolve_references()
    config.model.prior, config.loss.beta = 'vamp', 1.0
    params = jax.jit(lambda key: vae.init(config, key, batch)['params'])(jax.random.key(1))
    rng, step = jax.random.key(6), jnp.asarray(config.loss.kl_warmup_steps)
    ref = jitted(vae.elbo_objective, config)(params, batch, rng, step)
    terms = jitted(beta_tc_vae.beta_tc_elbo, config)(params, batch, rng, step)
    for key in ('loss', 'elbo', 'recon', 'kl'):
        np.testing.assert_allclose(getattr(terms, key), getattr(ref, key), rtol=1e-5, atol=1e-3)
    z, mean, log_var, log_ratio_standard, _ = sampled(config, params, batch, rng)
    log_pz = vae.log_prior(config, params, z)
    mi, tc, dwkl = decompose(z, mean, log_var, 4500, log_pz)
    np.testing.assert_allclose(mi + tc + dwkl, ref.kl, atol=1e-4, rtol=1e-5)
    # The learned prior is not N(0, I): its KL differs from the standard prior's at the same z.
    assert float(jnp.max(jnp.abs(ref.kl - log_ratio_standard))) > 1e-1


def test_beta_weights_tc_only_and_warmup_scales_the_whole_penalty(setup):
    config, params, batch, n = setup
    config = config.copy_and_resolve_references()
    config.loss.beta, config.loss.kl_warmup_steps = 4.0, 10
    rng = jax.random.key(4)
    z, mean, log_var, _, recon = sampled(config, params, batch, rng)
    mi, tc, dwkl = decompose(z, mean, log_var, n)
    objective = jitted(beta_tc_vae.beta_tc_elbo, config)
    for step, w in ((10, 1.0), (20, 1.0), (5, 0.5), (0, 0.0)):
        loss = objective(params, batch, rng, jnp.asarray(step)).loss
        np.testing.assert_allclose(loss, -(recon - w * (mi + 4.0 * tc + dwkl)), rtol=1e-5,
                                   atol=1e-3)


def test_dataset_size_only_shifts_the_terms(setup):
    config, params, batch, n = setup
    z, mean, log_var, _, _ = sampled(config, params, batch, jax.random.key(5))
    d = z.shape[-1]
    a = decompose(z, mean, log_var, n)
    b = decompose(z, mean, log_var, 10 * n)
    for x, y, shift in zip(a, b, (1, d - 1, -d)):  # MI, TC, dwKL move by k log 10
        np.testing.assert_allclose(y - x, shift * math.log(10), atol=1e-4)


def test_tc_is_larger_when_the_aggregate_posterior_is_correlated():
    """16 narrow posteriors (sd 0.01, means 1 apart, z = the means): on a 4 x 4 grid q(z) is a
    product (true TC 0); on the diagonal z1 = z2 (true TC log 16). Cross terms are exp(-5000)."""
    n, sd, t = 1000, 0.01, jnp.arange(4.0)
    grid = jnp.stack(jnp.meshgrid(t, t), -1).reshape(16, 2)
    diagonal = jnp.stack([jnp.arange(16.0)] * 2, -1)
    log_var = jnp.full((16, 2), 2 * math.log(sd))
    tc_grid = decompose(grid, grid, log_var, n)[1]
    tc_diag = decompose(diagonal, diagonal, log_var, n)[1]
    assert float(jnp.min(tc_diag)) > float(jnp.max(tc_grid)) + 2.0
    # MWS's log q is the minibatch mixture's, log (1/M) sum_j q(z | n_j), minus log N, for the
    # joint and each of the D factors alike: its TC is the mixture's (0 on the grid, log 16 on the
    # diagonal) plus (D - 1) log N.
    np.testing.assert_allclose(tc_grid, math.log(n), atol=1e-4)
    np.testing.assert_allclose(tc_diag - tc_grid, math.log(16), atol=1e-4)
    # Identical posteriors (q(z) = q(z | n), independent of n): the same floor, at any z.
    z = jax.random.normal(jax.random.key(0), (8, 4))
    tc_same = decompose(z, jnp.zeros((8, 4)), jnp.zeros((8, 4)), n)[1]
    np.testing.assert_allclose(tc_same, 3 * math.log(n), atol=1e-4)


def test_trains_by_module_and_by_file_then_resumes(tmp_path, data_dir):
    results = {}
    for name, spec in (('module', MODULE_SPEC), ('file', FILE_SPEC)):
        config = smoke_config('vae_mnist', data_dir, VAE, {'train.num_steps': 8})
        config.objective, config.loss.beta = spec, 4.0
        config.loss.kl_warmup_steps = 0  # so the logged loss is one objective throughout
        workdir = str(tmp_path / name)
        results[name] = trainer.train_and_evaluate(config, workdir)
        losses = [m['loss'] for m in read_metrics(workdir)]
        assert len(losses) == 4 and losses[-1] < losses[0]
        assert results[name]['step'] == 8 and np.isfinite(results[name]['nll_nats'])
    # One function, two spellings: the same run.
    assert results['module']['nll_nats'] == results['file']['nll_nats']

    config = smoke_config('vae_mnist', data_dir, VAE)
    config.objective, config.loss.beta, config.loss.kl_warmup_steps = MODULE_SPEC, 4.0, 0
    workdir = str(tmp_path / 'module')
    result = trainer.train_and_evaluate(config, workdir)
    assert result['step'] == 12 and np.isfinite(result['nll_nats'])
    assert json.load(open(os.path.join(workdir, 'eval.json')))['step'] == 12
    # Resumed from step 8, not retrained from 0: steps 10 and 12 follow the first run's log.
    assert [m['step'] for m in read_metrics(workdir) if 'loss' in m] == [2, 4, 6, 8, 10, 12]


def _bad_signature(tmp_path):
    path = tmp_path / 'bad_objective.py'
    path.write_text('def f(a, b):\n    return a\n')
    return f'{path}:f', 'takes (a, b)'


@pytest.mark.parametrize('spec, expect', [
    ('no_such_module:fn', 'no_such_module'),
    ('examples.beta_tc_vae:nope', "no function 'nope'"),
    ('/nonexistent/x.py:fn', 'no file /nonexistent/x.py'),
    (_bad_signature, None),
])
def test_bad_objective_is_one_line_and_leaves_no_workdir(tmp_path, data_dir, spec, expect):
    if callable(spec):
        spec, expect = spec(tmp_path)
    config = smoke_config('vae_mnist', data_dir, VAE)
    config.objective = spec
    workdir = str(tmp_path / 'run')
    with pytest.raises(config_lib.ConfigError) as e:
        trainer.train_and_evaluate(config, workdir)
    assert isinstance(e.value, ValueError)
    assert '\n' not in str(e.value) and expect in str(e.value)
    assert not os.path.exists(workdir)
