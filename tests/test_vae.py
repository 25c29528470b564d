"""The VAE's maths against closed forms: Gaussian KL, the IWAE ordering, and probabilistic PCA."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import stats

from configs import vae_mnist
from genmodels import data as data_lib, families, trainer
from genmodels.config import ConfigError
from genmodels.families import vae
from genmodels.nn import noise
from tests import helpers
from tests.helpers import jitted_init


def _standard_prior_config() -> ml_collections.ConfigDict:
    """configs/vae_mnist.py with the N(0, I) prior the closed forms here assume."""
    config = vae_mnist.get_config()
    config.model.prior, config.model.prior_components = 'standard', 0
    return config


def _linear_gaussian_config(latent: int) -> ml_collections.ConfigDict:
    """A VAE whose encoder and decoder are single linear layers: probabilistic PCA."""
    config = _standard_prior_config()
    config.model.hidden = ()
    config.model.latent_dim = latent
    config.model.likelihood = 'gaussian'
    config.data.binarize = False
    config.data.dequantize = True
    return config


def test_gaussian_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(4, 3)).astype(np.float32)
    log_var = rng.normal(scale=0.5, size=(4, 3)).astype(np.float32)
    z = mean + np.exp(0.5 * log_var) * rng.normal(size=(200_000, 4, 3))
    log_q = np.sum(-0.5 * ((z - mean) ** 2 / np.exp(log_var) + log_var + math.log(2 * math.pi)), -1)
    log_p = np.sum(-0.5 * (z ** 2 + math.log(2 * math.pi)), -1)
    mc = np.mean(log_q - log_p, axis=0)
    np.testing.assert_allclose(vae.gaussian_kl(mean, log_var), mc, rtol=0.02, atol=0.01)



def test_bernoulli_log_likelihood_matches_float64_closed_form():
    """log p(x | z) for binarised pixels: sum of x log sigmoid(l) + (1 - x) log sigmoid(-l) in
    float64, finite and accurate at logits far in both tails, and its gradient x - sigmoid(l)."""
    config = vae_mnist.get_config()
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=6.0, size=(3, 28, 28, 1)).astype(np.float32)
    logits[0, :2, 0, 0] = [80.0, -80.0]  # saturated: the terms are 0 or -80
    x = (rng.uniform(size=logits.shape) < 0.4).astype(np.float32)
    x_data = data_lib.from_unit(config.data, x)  # model inputs in the data's value range
    l64, x64 = logits.astype(np.float64), x.astype(np.float64)
    exact = np.sum(x64 * -np.logaddexp(0, -l64) + (1 - x64) * -np.logaddexp(0, l64), (1, 2, 3))
    got = vae.log_px_given_z(config, None, x_data, logits)
    np.testing.assert_allclose(got, exact, rtol=1e-6)
    grad = jax.grad(lambda l: jnp.sum(vae.log_px_given_z(config, None, x_data, l)))(logits)
    np.testing.assert_allclose(grad, x64 - 1 / (1 + np.exp(-l64)), atol=1e-6)

def _ppca(d: int, latent: int, seed: int):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, latent)).astype(np.float32)       # x = W z + b + sigma * noise
    b = rng.normal(size=(d,)).astype(np.float32)
    sigma = 0.5
    x = (rng.normal(size=(32, latent)) @ w.T + b + sigma * rng.normal(size=(32, d))).astype(np.float32)
    cov = w @ w.T + sigma ** 2 * np.eye(d)
    diff = x - b
    _, logdet = np.linalg.slogdet(cov)
    exact = -0.5 * (np.sum(diff @ np.linalg.inv(cov) * diff, -1) + logdet + d * math.log(2 * math.pi))
    # Exact posterior (Tipping & Bishop 1999, Eq. 6): N(M^-1 W^T (x - b), sigma^2 M^-1).
    m = w.T @ w + sigma ** 2 * np.eye(latent)
    m_inv = np.linalg.inv(m)
    post_mean_map = (m_inv @ w.T).T                           # x - b -> posterior mean
    post_var = np.diag(sigma ** 2 * m_inv)
    return x, w, b, sigma, exact, post_mean_map, post_var


def _ppca_params(config, x, w, b, sigma, mean_map, post_var, d):
    """Sets the linear VAE's weights to the pPCA model and a diagonal (mean-field) posterior."""
    state = jitted_init(vae, config, jax.random.key(0), {'image': x.reshape(-1, d, 1, 1)})
    params = jax.tree.map(np.asarray, state['params'])
    latent = w.shape[1]
    enc_kernel = np.concatenate([mean_map, np.zeros((d, latent), np.float32)], axis=1)
    enc_bias = np.concatenate([-b @ mean_map, np.log(post_var)]).astype(np.float32)
    params['encoder'] = {'dense_0': {'kernel': enc_kernel, 'bias': enc_bias}}
    params['decoder'] = {'dense_0': {'kernel': w.T.copy(), 'bias': b}}
    params['log_scale'] = np.full((d, 1, 1), math.log(sigma), np.float32)
    return params


@pytest.mark.parametrize('seed', [0, 1])
def test_ppca_iwae_approaches_exact_log_likelihood(seed):
    d, latent = 6, 2
    config = _linear_gaussian_config(latent)
    x, w, b, sigma, exact, mean_map, post_var = _ppca(d, latent, seed)
    # A mean-field posterior twice as wide as the true marginals: a poor q, but a safe proposal.
    params = _ppca_params(config, x, w, b, sigma, mean_map, 2.0 * post_var, d)
    batch = {'image': jnp.asarray(x.reshape(-1, d, 1, 1)), 'index': jnp.arange(len(x))}
    rng = jax.random.key(1)
    log_w = vae.iwae_log_weights(config, params, batch['image'], batch['index'], rng, 1000)
    elbo = np.asarray(jnp.mean(log_w, axis=1))
    iwae = np.asarray(vae.log_likelihood(config, params, batch, rng, k=2000))
    # The ELBO is well below log p(x) (the gap is KL(q || posterior)); IWAE-2000 closes it.
    assert np.all(exact - elbo > 0.05)
    np.testing.assert_allclose(iwae, exact, atol=0.08)
    assert abs(np.mean(iwae - exact)) < 0.02 < 0.5 * np.mean(exact - elbo)


def test_ppca_with_exact_posterior_has_tight_elbo():
    """If q(z|x) is the exact posterior, log w is constant: ELBO = IWAE = log p(x) (Burda Sec. 3)."""
    d, latent = 5, 1  # With one latent, the exact posterior is diagonal, so the encoder represents it.
    config = _linear_gaussian_config(latent)
    x, w, b, sigma, exact, mean_map, post_var = _ppca(d, latent, seed=3)
    params = _ppca_params(config, x, w, b, sigma, mean_map, post_var, d)
    batch = {'image': jnp.asarray(x.reshape(-1, d, 1, 1)), 'index': jnp.arange(len(x))}
    log_w = vae.iwae_log_weights(config, params, batch['image'], batch['index'], jax.random.key(2), 16)
    np.testing.assert_allclose(np.asarray(log_w), np.repeat(exact[:, None], 16, 1), rtol=1e-5,
                               atol=1e-4)


def test_elbo_below_iwae_k_below_iwae_larger_k():
    config = _standard_prior_config()
    config.model.hidden = (64,)
    config.model.latent_dim = 8
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(64, 28, 28, 1)) < 0.3).astype(np.float32)
    params = jitted_init(vae, config, jax.random.key(0), {'image': x})['params']
    batch = {'image': jnp.asarray(x), 'index': jnp.arange(64)}
    key = jax.random.key(5)
    # Averages over 64 examples keep the Monte Carlo error well below the gaps.
    elbo = float(jnp.mean(jax.jit(lambda p: vae.elbo(config, p, batch, key).elbo)(params)))
    bounds = [float(jnp.mean(jax.jit(lambda p: vae.log_likelihood(config, p, batch, key, k, 50))(params)))
              for k in (5, 50, 500)]
    assert elbo < bounds[0] < bounds[1] < bounds[2]


def test_iwae_chunking_covers_k_samples():
    """k not a multiple of the chunk: the padded samples are masked, so k=1 equals the ELBO sample."""
    config = _standard_prior_config()
    config.model.hidden = (32,)
    x = (np.random.default_rng(1).uniform(size=(4, 28, 28, 1)) < 0.5).astype(np.float32)
    params = jitted_init(vae, config, jax.random.key(0), {'image': x})['params']
    batch = {'image': jnp.asarray(x), 'index': jnp.arange(4)}
    key = jax.random.key(3)
    one = vae.log_likelihood(config, params, batch, key, k=1, chunk=1)
    log_w = vae.iwae_log_weights(config, params, batch['image'], batch['index'],
                                 jax.random.fold_in(key, 0), 1)[:, 0]
    np.testing.assert_allclose(one, log_w, rtol=1e-6)
    padded = vae.log_likelihood(config, params, batch, key, k=7, chunk=4)
    chunks = [vae.iwae_log_weights(config, params, batch['image'], batch['index'],
                                   jax.random.fold_in(key, c), 4) for c in (0, 1)]
    direct = jax.nn.logsumexp(jnp.concatenate(chunks, 1)[:, :7], axis=1) - math.log(7)
    np.testing.assert_allclose(padded, direct, rtol=1e-5)


@pytest.mark.parametrize('architecture,scale', [('mlp', '01'), ('conv', '-11')])
def test_samples_and_reconstructions_in_data_range(architecture, scale):
    config = vae_mnist.get_config()
    config.model.architecture = architecture
    config.data.scale = scale
    x = np.zeros((2, 28, 28, 1), np.float32)
    params = jitted_init(vae, config, jax.random.key(0), {'image': x})['params']
    lo = -1.0 if scale == '-11' else 0.0
    sample = jax.jit(lambda p: vae.sample(config, p, jax.random.key(1), 3))(params)
    recon = jax.jit(lambda p: vae.reconstruct(config, p, x))(params)
    for images in (sample, recon):
        assert images.shape[1:] == (28, 28, 1)
        assert float(images.min()) >= lo and float(images.max()) <= 1.0


def test_per_example_noise_depends_on_global_index_only():
    """The same example at the same global index draws the same noise in any batch layout."""
    key = jax.random.key(0)
    full = noise.normal(key, jnp.arange(8), (3, 2))
    half = noise.normal(key, jnp.arange(4, 8), (3, 2))
    np.testing.assert_array_equal(full[4:], half)


def test_discretized_gaussian_is_a_distribution_over_the_levels_and_trains(tmp_path, data_dir):
    """P(x | z) of the discretised Gaussian sums to 1 over a pixel's 17 levels (`digits`), matches
    SciPy's normal CDF, and a few steps of training report the bound on the discrete data."""
    config = helpers.smoke_config('vae_mnist', data_dir, helpers.VAE,
                                  {'data.name': 'digits', 'data.binarize': False,
                                   'model.likelihood': 'discretized_gaussian'})
    levels = jnp.arange(17.0).reshape(17, 1, 1, 1) / 16            # every level of one pixel
    out = jnp.broadcast_to(jnp.array([0.3, math.log(0.2)]), (17, 1, 1, 2))
    log_p = vae.log_px_given_z(config, {'log_scale': jnp.zeros((1, 1, 1))}, levels, out)
    np.testing.assert_allclose(float(jax.nn.logsumexp(log_p)), 0.0, atol=1e-5)
    edges = np.concatenate([[-np.inf], (np.arange(16) + 0.5) / 16, [np.inf]])
    want = np.log(np.diff(stats.norm.cdf(edges, 0.3, 0.2)))
    np.testing.assert_allclose(np.asarray(log_p), want, rtol=1e-4, atol=1e-5)
    result = trainer.train_and_evaluate(config, str(tmp_path / 'w'))
    assert result['data_num_levels'] == 17 and result['data_dequantized'] == 0
    assert 0 < result['nll_bits_per_dim'] < math.log2(17)  # better than uniform over the levels
    bad = helpers.smoke_config('vae_mnist', data_dir, {'model.likelihood': 'discretized_gaussian'})
    with pytest.raises(ConfigError, match='discretised Gaussian likelihood models the integer'):
        families.validated(bad)  # vae_mnist binarises its data


def _mixture_config(prior: str, k: int, latent: int = 2) -> ml_collections.ConfigDict:
    config = vae_mnist.get_config()
    config.model.hidden = (16,)
    config.model.latent_dim = latent
    config.model.prior = prior
    config.model.prior_components = k
    return config


@pytest.mark.parametrize('prior', ['mog', 'vamp'])
def test_mixture_prior_density_and_samples_match_scipy(prior):
    """log p(z) of a learned mixture prior equals SciPy's equally weighted mixture of its
    components (for VampPrior, the encoder's posteriors at the pseudo-inputs), and z ~ p(z) has
    the mixture's mean and covariance."""
    config = _mixture_config(prior, k=3)
    x = np.zeros((1, 28, 28, 1), np.float32)
    params = jitted_init(vae, config, jax.random.key(0), {'image': x})['params']
    if prior == 'mog':
        params['prior'] = {'means': jnp.array([[-2.0, 0.0], [1.0, 1.5], [0.5, -1.0]]),
                           'log_vars': jnp.log(jnp.array([[0.3, 1.0], [0.5, 0.2], [2.0, 0.7]]))}
    else:  # pseudo-inputs far apart, so their posteriors differ
        u = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype(np.float32) * 3
        params['prior'] = {'pseudo_inputs': jnp.asarray(u)}
    means, log_vars = (np.asarray(a, np.float64) for a in vae.prior_components(config, params))
    if prior == 'vamp':
        want_means, want_log_vars = vae.encode(config, params, params['prior']['pseudo_inputs'])
        np.testing.assert_allclose(means, want_means, rtol=1e-6)
        np.testing.assert_allclose(log_vars, want_log_vars, rtol=1e-6)
    z = np.random.default_rng(1).normal(size=(50, 2)) * 2
    want = np.log(np.mean([stats.multivariate_normal(m, np.diag(np.exp(v))).pdf(z)
                           for m, v in zip(means, log_vars)], axis=0))
    got = vae.log_prior(config, params, jnp.asarray(z, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    draws = np.asarray(vae.sample_prior(config, params, jax.random.key(2), 200_000), np.float64)
    mixture_mean = means.mean(0)
    second = np.mean([np.diag(np.exp(v)) + np.outer(m, m) for m, v in zip(means, log_vars)], 0)
    np.testing.assert_allclose(draws.mean(0), mixture_mean, atol=0.02)
    np.testing.assert_allclose(np.cov(draws.T), second - np.outer(mixture_mean, mixture_mean),
                               rtol=0.02, atol=0.02)


def test_one_component_mixture_prior_matches_closed_forms():
    """A MoG prior of one N(0, I) component is the standard prior: the same IWAE log weights. With
    one component N(m, diag v), the ELBO's one-sample KL estimate averages to the closed-form KL
    between the two Gaussians."""
    config = _mixture_config('mog', k=1, latent=4)
    standard = _mixture_config('standard', k=0, latent=4)
    x = (np.random.default_rng(0).uniform(size=(8, 28, 28, 1)) < 0.3).astype(np.float32)
    params = jitted_init(vae, config, jax.random.key(0), {'image': x})['params']
    params['prior'] = {'means': jnp.zeros((1, 4)), 'log_vars': jnp.zeros((1, 4))}
    batch = {'image': jnp.asarray(x), 'index': jnp.arange(8)}
    key = jax.random.key(4)
    np.testing.assert_allclose(
        vae.iwae_log_weights(config, params, batch['image'], batch['index'], key, 16),
        vae.iwae_log_weights(standard, params, batch['image'], batch['index'], key, 16),
        rtol=1e-6, atol=1e-4)
    m, v = np.array([0.5, -0.3, 1.0, 0.2]), np.array([0.5, 2.0, 1.0, 0.8])
    params['prior'] = {'means': jnp.asarray(m[None], jnp.float32),
                       'log_vars': jnp.asarray(np.log(v)[None], jnp.float32)}
    mean, log_var = (np.asarray(a, np.float64) for a in vae.encode(config, params, batch['image']))
    exact = 0.5 * np.sum(np.log(v) - log_var + (np.exp(log_var) + (mean - m) ** 2) / v - 1, -1)
    assert exact.min() > 0.5  # a KL the estimate has to find
    kl = jax.jit(jax.vmap(lambda k: vae.elbo(config, params, batch, k).kl))(
        jax.random.split(key, 4000))
    np.testing.assert_allclose(np.mean(np.asarray(kl), 0), exact, rtol=0.03, atol=0.03)


@pytest.mark.parametrize('prior,top', [('mog', 0), ('vamp', 0), ('vamp', 3)])
def test_mixture_priors_and_two_layers_train_and_report_bounds(prior, top, tmp_path, data_dir):
    config = helpers.smoke_config('vae_mnist', data_dir, helpers.VAE,
                                  {'model.prior': prior, 'model.prior_components': 5,
                                   'model.top_latent_dim': top, 'model.top_hidden': (8,)})
    result = trainer.train_and_evaluate(config, str(tmp_path / 'w'))
    assert np.isfinite(result['nll_nats']) and result['nll_nats'] <= -result['elbo_nats'] + 1.0
    bad = helpers.smoke_config('vae_mnist', data_dir, {'model.prior': prior,
                                                       'model.prior_components': 0})
    with pytest.raises(ConfigError, match='set model.prior_components'):
        families.validated(bad)
    with pytest.raises(ConfigError, match='model.prior must be one of'):
        families.validated(helpers.smoke_config('vae_mnist', data_dir, {'model.prior': 'flow'}))


def test_two_layer_linear_gaussian_iwae_approaches_exact_log_likelihood():
    """Two stochastic layers, every network linear: z2 ~ N(0, 1), z1 = A z2 + c + N(0, S1),
    x = W z1 + b + N(0, sigma^2), so x is Gaussian in closed form. With q(z2 | z1) the exact
    posterior and q(z1 | x) a mean-field proposal twice as wide as the exact marginals, IWAE-2000
    reaches log p(x) while the ELBO stays below it."""
    d, d1 = 5, 2
    config = _linear_gaussian_config(d1)
    config.model.top_latent_dim = 1
    rng = np.random.default_rng(0)
    a, c = rng.normal(size=(d1, 1)), rng.normal(size=d1)
    s1 = np.array([0.3, 0.6])
    w, b, sigma = rng.normal(size=(d, d1)), rng.normal(size=d), 0.5
    c1 = a @ a.T + np.diag(s1)                                  # Cov z1
    cov = w @ c1 @ w.T + sigma ** 2 * np.eye(d)
    z1 = rng.multivariate_normal(c, c1, size=16)
    x = (z1 @ w.T + b + sigma * rng.normal(size=(16, d))).astype(np.float32)
    exact = stats.multivariate_normal(w @ c + b, cov).logpdf(x)
    # q(z1 | x): the exact posterior's mean, twice its marginal variances.
    p_inv = np.linalg.inv(np.linalg.inv(c1) + w.T @ w / sigma ** 2)
    mean_map = p_inv @ w.T / sigma ** 2
    mean_bias = p_inv @ (np.linalg.inv(c1) @ c - w.T @ b / sigma ** 2)
    # q(z2 | z1): exact, N(q_inv A^T S1^-1 (z1 - c), q_inv) with q = 1 + A^T S1^-1 A.
    q_inv = 1.0 / (1.0 + a.T @ np.diag(1 / s1) @ a)
    z2_map = (q_inv @ a.T @ np.diag(1 / s1)).T                  # [d1, 1]
    state = jitted_init(vae, config, jax.random.key(0), {'image': x.reshape(-1, d, 1, 1)})
    params = jax.tree.map(np.asarray, state['params'])
    f32 = lambda *arrays: [np.asarray(v, np.float32) for v in arrays]  # noqa: E731
    kernel, bias = f32(np.concatenate([mean_map.T, np.zeros((d, d1))], 1),
                       np.concatenate([mean_bias, np.log(2 * np.diag(p_inv))]))
    params['encoder'] = {'dense_0': {'kernel': kernel, 'bias': bias}}
    kernel, bias = f32(np.concatenate([z2_map, np.zeros((d1, 1))], 1),
                       np.concatenate([-c @ z2_map, np.log(q_inv[0])]))
    params['top_encoder'] = {'dense_0': {'kernel': kernel, 'bias': bias}}
    kernel, bias = f32(np.concatenate([a.T, np.zeros((1, d1))], 1), np.concatenate([c, np.log(s1)]))
    params['top_decoder'] = {'dense_0': {'kernel': kernel, 'bias': bias}}
    params['decoder'] = {'dense_0': {'kernel': f32(w.T)[0], 'bias': f32(b)[0]}}
    params['log_scale'] = np.full((d, 1, 1), math.log(sigma), np.float32)
    batch = {'image': jnp.asarray(x.reshape(-1, d, 1, 1)), 'index': jnp.arange(16)}
    key = jax.random.key(1)
    iwae = np.asarray(vae.log_likelihood(config, params, batch, key, k=2000))
    elbo = np.asarray(jnp.mean(vae.iwae_log_weights(config, params, batch['image'],
                                                    batch['index'], key, 1000), axis=1))
    assert np.all(exact - elbo > 0.05)
    np.testing.assert_allclose(iwae, exact, atol=0.08)
    assert abs(np.mean(iwae - exact)) < 0.02
    # The training ELBO's one-sample KL is the same estimate: its mean matches the weights'.
    terms = jax.jit(jax.vmap(lambda k: vae.elbo(config, params, batch, k).elbo))(
        jax.random.split(key, 1000))
    np.testing.assert_allclose(np.mean(np.asarray(terms), 0), elbo, atol=0.15)
