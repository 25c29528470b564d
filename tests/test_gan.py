"""GAN family: objectives against hand-computed values, the gradient penalty of a linear critic in
closed form, spectral norm against the SVD, the InfoGAN bound, and short runs through the trainer."""

import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cdcgan_mnist, dcgan_mnist, gan_grid25, infogan_mnist
from genmodels import data, families, trainer
from genmodels.config import ConfigError
from genmodels.families import gan
from genmodels.families.gan.networks import BatchStatNorm
from genmodels.metrics import labels, modes
from tests.helpers import jitted_init
from tests.test_trainer import Killed, kill_after, read_metrics, restore_params

KEYS = jax.random.split(jax.random.key(0), 4)
REAL = jnp.ones((4, 2, 1, 1))
FAKE = jnp.zeros((4, 2, 1, 1))


def constant_critic(x):  # D = sigmoid(0) = 1/2 everywhere
    return jnp.zeros(x.shape[0])


def test_d_equal_one_half_gives_the_minimax_value_minus_log_4():
    config = gan_grid25.get_config()
    d_loss, g_loss = gan.OBJECTIVES['minimax'](config, constant_critic, REAL, FAKE, KEYS)
    np.testing.assert_allclose(d_loss, 2 * math.log(2), rtol=1e-6)  # 1.386, as at the start
    np.testing.assert_allclose(-d_loss, -math.log(4), rtol=1e-6)    # V(D, G) = -log 4
    np.testing.assert_allclose(g_loss, -math.log(2), rtol=1e-6)     # log(1 - 1/2)
    _, g_ns = gan.OBJECTIVES['non_saturating'](config, constant_critic, REAL, FAKE, KEYS)
    np.testing.assert_allclose(g_ns, math.log(2), rtol=1e-6)         # -log(1/2)


@pytest.mark.parametrize('name,logit_real,logit_fake,d_want,g_want', [
    ('hinge', 0.5, -2.0, 0.5 + 0.0, 2.0),
    ('hinge', 2.0, 0.5, 0.0 + 1.5, -0.5),
    ('least_squares', 0.5, -2.0, 0.5 * (0.25 + 4.0), 0.5 * 9.0),
    ('relativistic', 0.5, -2.0, math.log1p(math.exp(-2.5)), math.log1p(math.exp(2.5))),
])
def test_objectives_on_hand_computed_logits(name, logit_real, logit_fake, d_want, g_want):
    config = gan_grid25.get_config()

    def critic(x):
        return jnp.where(x[:, 0, 0, 0] > 0.5, logit_real, logit_fake)

    d_loss, g_loss = gan.OBJECTIVES[name](config, critic, REAL, FAKE, KEYS)
    np.testing.assert_allclose(d_loss, d_want, rtol=1e-6)
    np.testing.assert_allclose(g_loss, g_want, rtol=1e-6)


def test_top_k_keeps_the_samples_with_the_lowest_g_loss():
    losses = jnp.array([4.0, 1.0, 3.0, 2.0, 5.0])
    np.testing.assert_allclose(gan.top_k_mean(losses, 0.4), 1.5)       # {1, 2}
    np.testing.assert_allclose(gan.top_k_mean(losses, 0.5), 2.0)       # ceil(2.5) = 3: {1, 2, 3}
    np.testing.assert_allclose(gan.top_k_mean(losses, 1.0), 3.0)
    np.testing.assert_allclose(gan.top_k_mean(losses, 0.01), 1.0)      # at least one
    config = gan_grid25.get_config()
    config.loss.top_k, config.loss.top_k_decay_steps = 0.5, 100
    fractions = [float(gan.top_k_fraction(config, jnp.array(s))) for s in (0, 50, 100, 500)]
    np.testing.assert_allclose(fractions, [1.0, 0.75, 0.5, 0.5])
    # Only the kept samples give G a gradient.
    grads = jax.grad(lambda x: gan.top_k_mean(x, 0.4))(losses)
    np.testing.assert_allclose(grads, [0.0, 0.5, 0.0, 0.5, 0.0])


def test_gradient_penalty_of_a_linear_critic_is_its_closed_form():
    """l(x) = w.x has grad w everywhere: the penalty is (|w| - 1)^2 at every interpolate, and the
    WGAN-GP D loss is w.fake - w.real + 10 (|w| - 1)^2."""
    config = gan_grid25.get_config()
    w = jnp.array([3.0, -4.0])  # |w| = 5

    def critic(x):
        return x.reshape(x.shape[0], -1) @ w

    real = jax.random.normal(jax.random.key(1), (4, 2, 1, 1))
    fake = jax.random.normal(jax.random.key(2), (4, 2, 1, 1))
    np.testing.assert_allclose(gan.gradient_penalty(critic, real, fake, KEYS), 16.0, rtol=1e-5)
    d_loss, g_loss = gan.OBJECTIVES['wgan_gp'](config, critic, real, fake, KEYS)
    np.testing.assert_allclose(d_loss, critic(fake) - critic(real) + 160.0, rtol=1e-5)
    np.testing.assert_allclose(g_loss, -critic(fake), rtol=1e-6)
    np.testing.assert_allclose(gan.r1_penalty(critic, real), 25.0, rtol=1e-5)


def test_r1_on_a_fraction_of_the_batch_is_the_mean_over_its_first_rows():
    """R1 of l(x) = sum_i w_i x_i^2 is 4 sum_i w_i^2 x_i^2 per example: r1_fraction 0.25 of 8
    rows averages the first 2, 0.3 rounds up to 3, and 1 takes all 8."""
    config = dcgan_mnist.get_config()
    w = jnp.array([1.0, -2.0])

    def critic(x):
        return jnp.sum(w * x.reshape(x.shape[0], -1) ** 2, -1)

    real = jax.random.normal(jax.random.key(3), (8, 2, 1, 1))
    per_example = 4.0 * jnp.sum(w ** 2 * real.reshape(8, 2) ** 2, -1)
    np.testing.assert_allclose(gan.r1_penalty(critic, real), per_example, rtol=1e-5)
    for fraction, rows in [(0.25, 2), (0.3, 3), (1.0, 8)]:
        config.loss.r1_fraction = fraction
        np.testing.assert_allclose(gan.r1_subset(config, critic, real),
                                   jnp.mean(per_example[:rows]), rtol=1e-5)


def test_diff_augment_translates_and_cuts_out_each_image_by_its_own_key():
    config = dcgan_mnist.get_config()
    x = jax.random.uniform(jax.random.key(0), (6, 16, 16, 1), minval=0.5, maxval=1.0)
    keys = jax.random.split(jax.random.key(1), 8)  # more keys than rows: the first 6 are used
    config.loss.augment = 'translation'
    moved = np.asarray(gan.diff_augment(config, x, keys))
    for i in range(6):  # a shift by (dy, dx), |d| <= 2, with zeros shifted in
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(moved[i], np.asarray(
                       jnp.pad(x[i], 2)[2 - dy:18 - dy, 2 - dx:18 - dx, 2:3]))]
        assert len(matches) == 1
    config.loss.augment = 'cutout'
    cut = np.asarray(gan.diff_augment(config, x, keys))
    zeros = (cut == 0).sum(axis=(1, 2, 3))
    assert np.all((zeros > 0) & (zeros <= 64)) and np.any(zeros == 64)  # up to 8 x 8, clipped
    np.testing.assert_array_equal(cut[cut != 0], np.asarray(x)[cut != 0])
    assert not np.array_equal(cut[0], cut[1])  # rows draw their own squares
    config.loss.augment = 'translation,cutout'
    np.testing.assert_array_equal(gan.diff_augment(config, x[:2], keys[:2]),
                                  gan.diff_augment(config, x, keys)[:2])
    config.loss.augment = 'translation,flip'
    with pytest.raises(ValueError, match="unknown \\['flip'\\]"):
        gan.check_config(config)


def test_spectral_norm_matches_the_largest_singular_value():
    dense = nn.SpectralNorm(nn.Dense(7, kernel_init=nn.initializers.normal(1.0)))
    x = jnp.ones((1, 5))
    variables = dense.init(jax.random.key(0), x, update_stats=True)
    for _ in range(50):  # power iterations, one per update, as in training
        _, updates = dense.apply(variables, x, update_stats=True, mutable=['batch_stats'])
        variables = {**variables, **updates}
    kernel = variables['params']['layer_instance']['kernel']
    stats = {jax.tree_util.keystr(path): v for path, v in
             jax.tree_util.tree_flatten_with_path(variables['batch_stats'])[0]}
    sigma = next(v for k, v in stats.items() if k.endswith("sigma']"))
    largest = float(jnp.linalg.svd(kernel, compute_uv=False)[0])
    assert float(sigma) == pytest.approx(largest, rel=1e-4)
    assert float(jnp.linalg.svd(kernel / sigma, compute_uv=False)[0]) == pytest.approx(1.0,
                                                                                       rel=1e-4)


def test_info_bound_is_code_entropy_minus_cross_entropy():
    config = infogan_mnist.get_config()
    k, n = config.model.info_categorical, config.model.info_continuous
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(6, k + n)), jnp.float32)
    codes = {'categorical': jnp.arange(6) % k, 'continuous': jnp.asarray(
        rng.uniform(-1, 1, (6, n)), jnp.float32)}
    log_softmax = np.log(np.exp(q[:, :k]) / np.exp(q[:, :k]).sum(1, keepdims=True))
    cross_entropy = -log_softmax[np.arange(6), np.arange(6) % k]
    gauss_nll = np.sum(0.5 * (codes['continuous'] - q[:, k:]) ** 2 + 0.5 * math.log(2 * math.pi),
                       1)
    entropy = math.log(k) + n * math.log(2.0)  # uniform categorical, U[-1, 1] codes
    np.testing.assert_allclose(gan.info_lower_bound(config, q, codes),
                               entropy - cross_entropy - gauss_nll, rtol=1e-5)
    # The loss's lambda L_I: each code's term times its own lambda.
    config.loss.info_weight, config.loss.info_continuous_weight = 0.7, 0.1
    np.testing.assert_allclose(
        gan.info_lower_bound(config, q, codes, weighted=True),
        0.7 * (math.log(k) - cross_entropy) + 0.1 * (n * math.log(2.0) - gauss_nll), rtol=1e-5)
    # A perfect categorical prediction bounds the categorical part of I(c; x) by log K = H(c).
    perfect = jnp.concatenate([100.0 * jax.nn.one_hot(codes['categorical'], k), q[:, k:]], 1)
    config.model.info_continuous = 0
    np.testing.assert_allclose(gan.info_lower_bound(config, perfect[:, :k], codes), math.log(k),
                               atol=1e-4)


def test_info_lambdas_decay_linearly_to_zero_over_the_last_share_of_the_steps(data_dir):
    config = small(infogan_mnist.get_config(), data_dir, num_steps=12)
    steps = jnp.arange(12)
    np.testing.assert_array_equal(gan.info_weight_scale(config, steps), 1.0)  # off by default
    config.loss.info_decay_fraction = 0.25  # the last 3 of 12 steps
    np.testing.assert_allclose(gan.info_weight_scale(config, steps),
                               [1] * 9 + [1.0, 2 / 3, 1 / 3], rtol=1e-6)
    config.loss.info_decay_fraction = 1.5
    with pytest.raises(gan.ConfigError, match='info_decay_fraction must be in'):
        gan.check_config(config)
    # The step uses it: at scale 1/2 a step equals one with both lambdas halved and no decay.
    config.model.channels = (4, 8)
    config.model.latent_dim = 6
    config.loss.info_decay_fraction = 1.0
    config.loss.info_weight, config.loss.info_continuous_weight = 0.8, 0.4
    example = {'image': np.zeros((1, 28, 28, 1), np.float32), 'label': np.zeros(1, np.int32),
               'index': np.zeros(1, np.int32)}
    state = dict(jitted_init(gan, config, jax.random.key(0), example), step=jnp.int32(6))
    rng = np.random.default_rng(0)
    batch = {'image': jnp.asarray(rng.uniform(-1, 1, (16, 28, 28, 1)), jnp.float32),
             'label': jnp.zeros(16, jnp.int32), 'index': jnp.arange(16, dtype=jnp.int32)}
    halved = config.copy_and_resolve_references()
    halved.loss.info_decay_fraction = 0.0
    halved.loss.info_weight, halved.loss.info_continuous_weight = 0.4, 0.2
    decayed, plain = (jax.jit(lambda s, b, c=c: gan.train_step(c, s, b, jax.random.key(1)))(
        state, batch) for c in (config, halved))
    for x, y in zip(jax.tree.leaves(decayed), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_fourier_features_have_the_configured_frequencies_and_feed_the_mlp_discriminator():
    """sin/cos(2 pi x B): at x = 0 they are (0, 1); near 0, phase / (2 pi x_d) recovers row d of
    B, whose std is fourier_scale cycles per unit; D's first layer sees x and both."""
    sin0, cos0 = gan.fourier_features(jnp.zeros((3, 2)), 2048, 1.5)
    np.testing.assert_array_equal(sin0, 0.0)
    np.testing.assert_array_equal(cos0, 1.0)
    eps = 1e-4
    sin, cos = gan.fourier_features(eps * jnp.eye(2), 2048, 1.5)
    freqs = np.arctan2(np.asarray(sin), np.asarray(cos)) / (2 * math.pi * eps)  # [2, 2048]
    assert abs(freqs.std() - 1.5) < 0.1 and abs(freqs.mean()) < 0.1
    again = gan.fourier_features(eps * jnp.eye(2), 2048, 1.5)  # fixed: not drawn per call
    np.testing.assert_array_equal(again[0], sin)
    config = gan_grid25.get_config('smoke')
    config.model.fourier_features = 16
    _, d = gan.networks(config, (1, 1, 2))
    variables = d.init(jax.random.key(0), jnp.zeros((4, 1, 1, 2)), jnp.zeros(4, jnp.int32))
    assert variables['params']['dense_0']['kernel'].shape[0] == 2 + 2 * 16


@pytest.mark.parametrize('model,match', [
    ({'fourier_features': -1}, 'fourier_features must be >= 0'),
    ({'fourier_scale': 0.0}, 'fourier_scale'),
    ({'fourier_features': 8, 'architecture': 'dcgan'}, 'MLP discriminator only'),
])
def test_fourier_feature_config_errors(model, match):
    config = gan_grid25.get_config('smoke')
    config.model.update(model)
    with pytest.raises(gan.ConfigError, match=match):
        gan.check_config(config)


def toy_generator(data_dir, **model):
    config = small(gan_grid25.get_config(), data_dir)
    config.model.hidden = (32, 32)
    config.model.update(model)
    shape = data.dataset_info(config.data).shape
    example = {'image': np.zeros((1,) + shape, np.float32), 'label': np.zeros(1, np.int32),
               'index': np.zeros(1, np.int32)}
    params = gan.eval_params(config, jitted_init(gan, config, jax.random.key(0), example))
    g, _ = gan.networks(config, shape)
    return config, g, params


def test_jacobian_norms_match_central_differences(data_dir):
    config, g, params = toy_generator(data_dir)
    g_in, _ = gan.latents(config, jax.random.key(1), jnp.arange(6))
    labels = jnp.zeros(6, jnp.int32)
    norms = gan.jacobian_norms(g, 2, params, g_in, labels)
    eps = 1e-3  # small enough that no ReLU of G changes side between z - eps and z + eps
    columns = [(g.apply(params, g_in + eps * e, labels, train=False)
                - g.apply(params, g_in - eps * e, labels, train=False)).reshape(6, -1) / (2 * eps)
               for e in jnp.eye(2)]
    want = jnp.sqrt(sum(jnp.sum(c ** 2, axis=1) for c in columns))
    np.testing.assert_allclose(norms, want, rtol=2e-3)


def test_jacobian_truncation_redraws_exactly_the_rows_above_the_threshold(data_dir):
    config, g, params = toy_generator(data_dir, info_categorical=5, info_continuous=1)
    config.sampler.jacobian_truncation = 0.2
    n, rng = 2000, jax.random.key(3)
    g_in, _ = gan.latents(config, rng, jnp.arange(n))
    labels = jnp.zeros(n, jnp.int32)
    out = np.asarray(gan.jacobian_truncation(config, g, params, rng, g_in, labels))
    threshold = float(gan.truncation_threshold(config, g, params, rng))
    before = np.asarray(gan.jacobian_norms(g, 2, params, g_in, labels))
    after = np.asarray(gan.jacobian_norms(g, 2, params, jnp.asarray(out), labels))
    kept = before <= threshold
    np.testing.assert_array_equal(out[kept], np.asarray(g_in)[kept])  # z under it: unchanged
    assert not np.any(np.all(out[~kept, :2] == np.asarray(g_in)[~kept, :2], axis=1))
    np.testing.assert_array_equal(out[:, 2:], np.asarray(g_in)[:, 2:])  # the codes: kept
    # A row whose code leaves few z under the threshold may run out of candidates and keep its
    # least steep one (here 1 row of 2,000; 19% lay above the threshold before).
    assert (after > threshold).mean() < 0.002
    # The threshold is the prior's 80th percentile: about a fifth of fresh draws lie above it
    # (binomial sd 0.009 at n = 2,000).
    assert abs((~kept).mean() - 0.2) < 0.04
    samples = gan.sample(config, params, rng, n)
    np.testing.assert_array_equal(samples, g.apply(params, jnp.asarray(out), labels, train=False))


def test_jacobian_truncation_config_error():
    config = gan_grid25.get_config('smoke')
    config.sampler.jacobian_truncation = 0.7
    with pytest.raises(gan.ConfigError, match=r'jacobian_truncation must be in \[0, 0.5\]'):
        gan.check_config(config)


def test_mode_coverage_counts_modes_and_quality():
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
    stds = np.full(3, 0.05)
    samples = np.concatenate([np.zeros((60, 2)), np.full((39, 2), [2.0, 0.1]),
                              np.full((1, 2), [4.0, 0.0])])
    result = modes.mode_coverage(samples, centres, stds)
    # mode 2 holds 1 sample of 100 (1%: covered); mode 1's samples lie 2 std off (near).
    assert result == {'modes_covered': 3, 'modes_total': 3, 'high_quality_fraction': 1.0,
                      'between_modes_fraction': 0.0}
    shifted = modes.mode_coverage(samples + [0.0, 0.1], centres, stds)  # mode 1's now 4 std off
    assert shifted == {'modes_covered': 2, 'modes_total': 3, 'high_quality_fraction': 0.61,
                       'between_modes_fraction': 0.0}
    # 4 std off is a widened mode, not a bridge; halfway between two modes (20 std) is one.
    midway = modes.mode_coverage(np.array([[1.0, 0.0], [0.0, 0.0]]), centres, stds)
    assert midway['between_modes_fraction'] == 0.5 and midway['high_quality_fraction'] == 0.5


def test_code_holdings_count_the_codes_on_one_mode_and_the_modes_they_hold():
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
    stds = np.full(3, 0.05)
    # code 0: all on mode 0; code 1: 6 of 10 on mode 1, 4 on mode 2; code 2: 5 of 10 on mode 0
    # (not more than half), the rest between modes; code 3: 9 on mode 0, one 4 std off mode 2.
    at = lambda mode, n, dy=0.0: np.tile(centres[mode] + [0.0, dy], (n, 1))
    samples = np.concatenate([at(0, 10), at(1, 6), at(2, 4), at(0, 5), np.tile([1.0, 0.0], (5, 1)),
                              at(0, 9), at(2, 1, 0.2)])
    codes = np.repeat([0, 1, 1, 2, 2, 3, 3], [10, 6, 4, 5, 5, 9, 1])
    result = modes.code_holdings(samples, codes, 5, centres, stds)  # code 4 drew no samples
    assert result == {'codes_holding_a_mode': 3, 'modes_held_by_codes': 2}


def test_exact_samples_cover_every_mode_of_both_grids():
    """2,500 exact samples: 1% per mode would leave about half of the 100-grid's modes (1% is
    each one's whole share) uncovered; a quarter of the share covers them all."""
    for name in ('toy_grid_25', 'toy_grid_100'):
        toy = data.toy_distribution(name)
        points = np.asarray(toy.sample(jax.random.key(0), 2500))
        result = modes.mode_coverage(points, toy.modes, toy.mode_stds)
        assert result['modes_covered'] == result['modes_total'] == len(toy.modes)
        assert result['high_quality_fraction'] > 0.98 and result['between_modes_fraction'] == 0.0


def test_code_class_agreement_finds_the_best_one_to_one_matching():
    codes = np.repeat(np.arange(3), 10)
    permuted = np.array([2, 0, 1])[codes]  # code k names class perm[k]: agreement is still 1
    assert labels.code_class_agreement(permuted, permuted, 3, 3)[0] == 1.0
    agreement, matching = labels.code_class_agreement(codes, permuted, 3, 4)
    assert agreement == 1.0 and list(matching) == [2, 0, 1]
    # Codes 0 and 1 both read mostly as class 0: one of them must take its second choice.
    read = np.array([0] * 8 + [1] * 2 + [0] * 6 + [2] * 4 + [3] * 10)
    agreement, matching = labels.code_class_agreement(codes, read, 3, 4)
    assert list(matching) == [0, 2, 3] and agreement == (8 + 4 + 10) / 30
    assert labels.label_accuracy(np.array([1, 2, 3, 3]), np.array([1, 2, 3, 4])) == 0.75


def small(config, data_dir, num_steps=8):
    config.data.data_dir = data_dir
    config.train.num_steps = num_steps
    config.train.log_every = 2
    config.train.checkpoint_every = 4
    config.train.batch_size = 16
    config.train.figures = False
    config.eval.max_examples = 50
    config.eval.num_samples = 50
    config.eval.batch_size = 50
    return config


@pytest.mark.parametrize('make', [cdcgan_mnist.get_config, infogan_mnist.get_config])
def test_conditional_and_infogan_shapes(make, data_dir):
    config = small(make(), data_dir)
    config.model.channels = (8, 16)
    config.model.latent_dim = 6
    example = {'image': np.zeros((1, 28, 28, 1), np.float32), 'label': np.zeros(1, np.int32),
               'index': np.zeros(1, np.int32)}
    state = jitted_init(gan, config, jax.random.key(0), example)
    images = gan.sample(config, gan.eval_params(config, state), jax.random.key(1), 20)
    assert images.shape == (20, 28, 28, 1)
    assert float(jnp.abs(images).max()) <= 1.0
    if config.model.conditional:  # class-balanced labels: two of each digit, different images
        assert not np.allclose(images[0], images[10])
    result = gan.evaluate(config, gan.eval_params(config, state), {}, jax.random.key(2))
    key = 'label_accuracy' if config.model.conditional else 'code_class_agreement'
    assert set(result) == {key, 'sampler_jacobian_truncation'} and 0.0 <= result[key] <= 1.0


def test_q_class_agreement_matches_the_codes_q_reads_from_real_digits(data_dir):
    config = small(infogan_mnist.get_config(), data_dir)
    config.model.update(channels=(8, 16), latent_dim=6)
    config.eval.batch_size = 7  # several batches, the last one short
    example = {'image': np.zeros((1, 28, 28, 1), np.float32), 'label': np.zeros(1, np.int32),
               'index': np.zeros(1, np.int32)}
    state = jitted_init(gan, config, jax.random.key(0), example)
    params = gan.eval_params(config, state)
    images = np.asarray(jax.random.uniform(jax.random.key(1), (30, 28, 28, 1), minval=-1.0))
    _, d = gan.networks(config, images.shape[1:])
    _, q = d.apply(state['d'], jnp.asarray(images), jnp.zeros(30, jnp.int32))  # one batch
    read = np.asarray(jnp.argmax(q[:, :10], -1))
    np.testing.assert_array_equal(gan.q_codes(config, params, images), read)
    # Labels that name Q's codes in another order agree fully: the codes are matched to classes.
    result = gan.evaluate(config, params, {'image': images, 'label': (read + 3) % 10},
                          jax.random.key(2))
    assert result['q_class_agreement'] == 1.0
    common = np.bincount(read).argmax()  # a code Q reads at least 3 times (30 images, 10 codes)
    split = read.copy()
    split[np.flatnonzero(read == common)[::2]] = (common + 1) % 10  # its digits: two labels
    result = gan.evaluate(config, params, {'image': images, 'label': split}, jax.random.key(2))
    assert result['q_class_agreement'] < 1.0


def test_batch_stat_norm_is_flax_batch_norm_in_training_mode():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (64, 5, 5, 7))
    ours = BatchStatNorm()
    params = ours.init(jax.random.key(1), x)
    params = jax.tree.map(lambda p: p + jnp.arange(7.0) / 10, params)  # scale and bias off 1, 0
    theirs = nn.BatchNorm(use_running_average=False, epsilon=1e-5)
    variables = theirs.init(jax.random.key(1), x)
    want, _ = theirs.apply({**variables, 'params': params['params']}, x, mutable=['batch_stats'])
    np.testing.assert_allclose(ours.apply(params, x), want, atol=1e-4)


def test_chen_et_al_networks_train_and_reject_a_per_example_penalty(data_dir):
    """model.fc_hidden and model.disc_batch_norm: G and D gain the dense layer, D and Q's head
    batch norm; a step is finite; R1 beside a batch-normalised D is refused."""
    config = small(infogan_mnist.get_config(), data_dir)
    config.model.update({'channels': (8, 16), 'latent_dim': 6, 'fc_hidden': 32,
                         'disc_batch_norm': True})
    example = {'image': np.zeros((1, 28, 28, 1), np.float32), 'label': np.zeros(1, np.int32),
               'index': np.zeros(1, np.int32)}
    state = jitted_init(gan, config, jax.random.key(0), example)
    assert {'fc', 'bn_fc', 'stem'} <= set(state['g']['params'])
    assert {'conv_0', 'conv_1', 'bn_1', 'fc', 'bn_fc', 'q_hidden', 'q_bn', 'q_out'} == set(
        state['d']['params']) - {'logit'}
    batch = {'image': jax.random.uniform(jax.random.key(1), (16, 28, 28, 1), minval=-1.0),
             'label': jnp.zeros(16, jnp.int32), 'index': jnp.arange(16)}
    _, metrics = jax.jit(lambda s: gan.train_step(config, s, batch, jax.random.key(2)))(state)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    config.loss.r1_weight = 10.0
    with pytest.raises(ConfigError, match='not per example'):
        families.validated(config)
    config.loss.r1_weight, config.model.architecture = 0.0, 'mlp'
    with pytest.raises(ConfigError, match='belong to the DCGAN'):
        families.validated(config)


def test_a_short_toy_run_moves_samples_toward_the_data(tmp_path, data_dir):
    config = small(gan_grid25.get_config(), data_dir, num_steps=500)
    config.model.hidden = (128, 128)
    config.train.batch_size = 128
    config.train.log_every = 100
    config.train.checkpoint_every = 500
    config.eval.use_ema = False
    config.optimizer.learning_rate = config.disc_optimizer.learning_rate = 1e-3
    config.sampler.jacobian_truncation = 0.0  # G's own samples (truncation: tests above)
    workdir = str(tmp_path / 'toy')
    trainer.train_and_evaluate(config, workdir)
    example = {'image': np.zeros((1, 2, 1, 1), np.float32), 'label': np.zeros(1, np.int32),
               'index': np.zeros(1, np.int32)}
    before = jitted_init(gan, config, jax.random.fold_in(jax.random.key(0), 0), example)
    after = restore_params(workdir, 500)
    points = np.asarray(data.load_split(config.data, 'test', 2000)['image']).reshape(-1, 2)

    def distance(state):  # sliced Wasserstein-1 between 2000 samples and 2000 test points
        x = np.asarray(gan.sample(config, gan.eval_params(config, state), jax.random.key(5),
                                  2000)).reshape(-1, 2)
        angles = np.linspace(0, np.pi, 16, endpoint=False)
        dirs = np.stack([np.cos(angles), np.sin(angles)], 1)
        return np.mean(np.abs(np.sort(x @ dirs.T, 0) - np.sort(points @ dirs.T, 0)))

    assert distance(after) < 0.5 * distance(before)  # measured: 0.40 vs 2.14


@pytest.mark.parametrize('objective', ['wgan_gp'])
def test_dcgan_resumes_bit_for_bit_with_batch_norm_and_spectral_norm(tmp_path, data_dir,
                                                                      objective):
    config = small(dcgan_mnist.get_config(), data_dir)
    config.objective = objective
    config.model.channels = (8, 16)
    config.model.latent_dim = 8
    config.model.spectral_norm = True
    config.loss.n_disc = 2
    config.loss.r1_weight = 1.0
    config.loss.r1_fraction = 0.5
    config.loss.augment = 'translation,cutout'
    straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
    trainer.train_and_evaluate(config, straight)
    with pytest.raises(Killed):
        trainer.train_and_evaluate(config, resumed, iterator_hook=kill_after(6))
    trainer.train_and_evaluate(config, resumed)
    a, b = restore_params(straight, 8), restore_params(resumed, 8)
    assert 'batch_stats' in a['g'] and 'batch_stats' in a['d']  # BN and SN state are saved
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    logs = read_metrics(straight)
    assert logs == [dict(m, time=n['time'], steps_per_sec=n['steps_per_sec'])
                    for m, n in zip(read_metrics(resumed), logs)]
    assert {'d_loss', 'g_loss', 'd_real_accuracy', 'd_fake_accuracy', 'd_grad_norm',
            'g_grad_norm', 'r1'} <= set(logs[-1])
    # D's optimizer counted n_disc updates per step.
    counts = [int(x) for x in jax.tree.leaves(a['d_opt']) if np.ndim(x) == 0]
    assert 16 in counts
    record = json.load(open(os.path.join(straight, 'eval.json')))
    assert np.isfinite(record['fid_mnist_classifier'])


@pytest.mark.parametrize('make', [cdcgan_mnist.get_config, infogan_mnist.get_config])
def test_conditional_and_infogan_figures(make, data_dir, tmp_path):
    config = small(make(), data_dir)
    config.model.channels = (8, 16)
    example = {'image': np.zeros((1, 28, 28, 1), np.float32), 'label': np.zeros(1, np.int32),
               'index': np.zeros(1, np.int32)}
    state = jitted_init(gan, config, jax.random.key(0), example)
    paths = gan.figures(config, gan.eval_params(config, state), example, jax.random.key(1),
                        str(tmp_path))
    names = sorted(os.path.basename(p) for p in paths)
    if config.model.conditional:
        assert names == ['classes.png', 'interpolation.png', 'samples.png']
    else:
        assert names == ['info_categorical.png', 'info_continuous_0.png', 'info_continuous_1.png',
                         'interpolation.png', 'samples.png']
    assert all(os.path.getsize(p) > 1000 for p in paths)


def test_toy_kl_estimate_is_small_for_true_samples_and_large_for_shifted_ones(monkeypatch,
                                                                          data_dir):
    config = small(gan_grid25.get_config(), data_dir)
    config.model.info_categorical = 5
    toy = data.toy_distribution(config.data.name)
    test = data.load_split(config.data, 'test', 2000)
    shift = {'value': 0.0}

    def sample(config, params, rng, num, codes=None):  # exact samples; code c on mode 3 + c // 2
        points = (toy.sample(rng, num) if codes is None
                  else toy.modes[3 + np.asarray(codes['categorical']) // 2])
        return (points + shift['value']).reshape(num, 2, 1, 1)

    monkeypatch.setattr(gan, 'sample', sample)
    exact = gan.evaluate(config, None, test, jax.random.key(0))
    shift['value'] = 0.15  # 4.2 mode std off: most samples fall outside 3 std of their mode
    shifted = gan.evaluate(config, None, test, jax.random.key(0))
    assert exact['modes_covered'] == 25 and exact['high_quality_fraction'] > 0.98
    assert (exact['codes_holding_a_mode'], exact['modes_held_by_codes']) == (5, 3)
    assert (shifted['codes_holding_a_mode'], shifted['modes_held_by_codes']) == (0, 0)
    # Measured: 0.098 nats (the KDE's smoothing) and 5.9 nats; true samples score 0.99 high
    # quality, the chance a 2D Gaussian falls within 3 std, 1 - exp(-4.5).
    assert 0.0 < exact['kl_estimate_nats'] < 0.2
    assert shifted['kl_estimate_nats'] > 1.0 and shifted['high_quality_fraction'] < 0.2
