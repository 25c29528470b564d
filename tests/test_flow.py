"""The normalizing flow: exact inverses, log-determinants against autodiff Jacobians, a density that
integrates to 1, the identity flow's closed form, and a smoke run end to end."""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import flow_mnist, flow_toy2d
from genmodels import config as config_lib, families, trainer
from genmodels.families import flow


def _perturbed(params, key, std):
    """Initial parameters plus N(0, std^2) noise: every coupling (zero at init) does something.
    Op by op: as one program, its draw per parameter (a threefry each) compiled for 13 s."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([x + std * jax.random.normal(k, x.shape)
                              for x, k in zip(leaves, keys)])


# Two small image flows: two scales with ActNorm and 1x1 convolutions, and one scale without.
IMAGE_FLOWS = [((4, 4, 2), 2, True, True), ((2, 2, 3), 1, False, False)]


@functools.cache
def _image_flow(shape, num_scales, actnorm=True, invertible_1x1=True):
    config = flow_mnist.get_config('smoke')
    config.model.update({'num_scales': num_scales, 'hidden': 6, 'actnorm': actnorm,
                         'invertible_1x1': invertible_1x1})
    net = flow.Flow(tuple(flow.plan(config.model, shape)), actnorm, invertible_1x1, 'conv',
                    config.model.hidden, config.model.num_blocks)
    params = jax.jit(net.init)(jax.random.key(0), jnp.zeros((1,) + shape))['params']
    return config, net, _perturbed(params, jax.random.key(1), 0.05)


def _toy_flow():
    config = flow_toy2d.get_config('smoke')
    net = flow.network(config)
    params = jax.jit(net.init)(jax.random.key(0), jnp.zeros((1, 1, 1, 2)))['params']
    return config, net, _perturbed(params, jax.random.key(1), 0.3)


@pytest.mark.parametrize('shape,num_scales,actnorm,invertible_1x1', IMAGE_FLOWS)
def test_inverse_undoes_forward_for_images(shape, num_scales, actnorm, invertible_1x1):
    _, net, params = _image_flow(shape, num_scales, actnorm, invertible_1x1)
    x = jax.random.normal(jax.random.key(2), (5,) + shape)
    z, _ = jax.jit(net.apply)({'params': params}, x)
    assert z.shape == (5, int(np.prod(shape)))
    back = jax.jit(lambda p, z: net.apply({'params': p}, z, shape, method=flow.Flow.inverse))(
        params, z)
    np.testing.assert_allclose(np.asarray(back), np.asarray(x), atol=2e-5)
    assert float(jnp.abs(jnp.sort(z, -1) - jnp.sort(x.reshape(5, -1), -1)).max()) > 0.05  # not
    # the identity, nor a permutation


def test_inverse_undoes_forward_for_points_and_sampling_inverts_the_density():
    config, net, params = _toy_flow()
    x = jax.random.normal(jax.random.key(2), (50, 1, 1, 2)) * 2.0
    z, _ = jax.jit(net.apply)({'params': params}, x)
    back = jax.jit(lambda p, z: net.apply({'params': p}, z, (1, 1, 2), method=flow.Flow.inverse))(
        params, z)
    np.testing.assert_allclose(np.asarray(back), np.asarray(x), atol=1e-5)
    # sample() is f^{-1} of z ~ N(0, T^2 I): mapping the samples forward gives that z back.
    samples = jax.jit(lambda p, k: flow.sample(config, p, k, 20_000, temperature=0.5))(
        params, jax.random.key(3))
    z, _ = jax.jit(net.apply)({'params': params}, samples.reshape(-1, 1, 1, 2))
    np.testing.assert_allclose(np.std(np.asarray(z), axis=0), [0.5, 0.5], rtol=0.03)


@pytest.mark.parametrize('shape,num_scales,actnorm,invertible_1x1', IMAGE_FLOWS)
def test_log_determinant_equals_slogdet_of_the_jacobian(shape, num_scales, actnorm,
                                                        invertible_1x1):
    _, net, params = _image_flow(shape, num_scales, actnorm, invertible_1x1)
    d = int(np.prod(shape))
    x = jax.random.normal(jax.random.key(3), (3,) + shape)
    _, logdet = jax.jit(net.apply)({'params': params}, x)

    @jax.jit
    def f(v):  # one flattened example -> z
        return net.apply({'params': params}, v.reshape((1,) + shape))[0][0]

    jacobian = jax.jit(jax.jacfwd(f))
    for i in range(3):
        jac = jacobian(x[i].reshape(d))                       # [D, D]
        sign, expected = np.linalg.slogdet(np.asarray(jac, np.float64))
        assert sign != 0
        np.testing.assert_allclose(float(logdet[i]), expected, rtol=1e-4, atol=1e-4)
        assert abs(expected) > 0.05  # a real volume change


def test_remat_couplings_give_the_same_parameters_and_gradients():
    """train.remat = 'blocks' recomputes each coupling net in the backward pass: the same
    parameter tree and the same gradients of the log-likelihood."""
    config, plain, params = _image_flow(*IMAGE_FLOWS[0])
    shape = IMAGE_FLOWS[0][0]
    remat = flow.Flow(plain.steps, plain.actnorm, plain.invertible_1x1, plain.net, plain.hidden,
                      plain.num_blocks, remat=True)
    assert jax.tree.map(jnp.shape, jax.jit(remat.init)(jax.random.key(0), jnp.zeros(
        (1,) + shape))['params']) == jax.tree.map(jnp.shape, params)
    x = jax.random.normal(jax.random.key(2), (4,) + shape)

    def grads(net):
        def loss(p):
            z, logdet = net.apply({'params': p}, x)
            return jnp.sum(z ** 2) / 2 - jnp.sum(logdet)
        return jax.jit(jax.grad(loss))(params)

    for a, b in zip(jax.tree.leaves(grads(plain)), jax.tree.leaves(grads(remat)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # recomputed: float rounding


def test_preprocessing_log_determinant_equals_the_logit_jacobian():
    config = flow_mnist.get_config('smoke')
    config.data.scale = '-11'  # the [-1, 1] -> [0, 1] map counts too
    images = jax.random.uniform(jax.random.key(4), (2, 2, 2, 1), minval=-1.0, maxval=1.0)
    y, logdet = flow.preprocess(config, images)
    for i in range(2):
        jac = jax.jacfwd(lambda v: flow.preprocess(config, v.reshape(1, 2, 2, 1))[0].reshape(4))(
            images[i].reshape(4))
        np.testing.assert_allclose(float(logdet[i]), np.linalg.slogdet(np.asarray(jac))[1],
                                   rtol=1e-5)
    np.testing.assert_allclose(np.asarray(flow.postprocess(config, y)), np.asarray(images),
                               atol=1e-5)


def test_toy_density_integrates_to_one_over_a_fine_grid():
    config, _, params = _toy_flow()
    edge = np.linspace(-9.0, 9.0, 601, dtype=np.float32)
    gx, gy = np.meshgrid(edge, edge)
    points = np.stack([gx.ravel(), gy.ravel()], -1).reshape(-1, 2, 1, 1)
    log_p = jax.jit(lambda x: flow.log_density(config, params, x))(points)
    p = np.exp(np.asarray(log_p, np.float64)).reshape(gx.shape)
    cell = (edge[1] - edge[0]) ** 2
    np.testing.assert_allclose(p.sum() * cell, 1.0, atol=2e-3)
    # and it is not the standard normal it started as
    normal = np.exp(-0.5 * (gx ** 2 + gy ** 2)) / (2 * np.pi)
    assert 0.5 * np.abs(p - normal).sum() * cell > 0.05  # total variation


def test_identity_flow_has_the_logit_gaussian_closed_form():
    """At initialisation every coupling is the identity, ActNorm too, and the 1x1 convolutions
    are rotations: z is a rotation of the logit inputs, so log p(x) = log N(logit(p); 0, I)
    + sum log((1 - 2a) / (p (1 - p)))."""
    config = flow_mnist.get_config('smoke')
    state = jax.jit(lambda k: flow.init(config, k, {'image': jnp.zeros((1, 28, 28, 1))}))(
        jax.random.key(0))
    x = np.asarray(jax.random.uniform(jax.random.key(5), (4, 28, 28, 1)), np.float64)
    a = config.model.logit_alpha
    p = a + (1 - 2 * a) * x
    y = np.log(p / (1 - p)).reshape(4, -1)
    expected = (-0.5 * (y ** 2).sum(1) - 0.5 * 784 * math.log(2 * math.pi)
                + (np.log(1 - 2 * a) - np.log(p * (1 - p))).reshape(4, -1).sum(1))
    got = jax.jit(lambda p, x: flow.log_density(config, p, x))(state['params'],
                                                               jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_bad_configs_are_one_line_errors():
    for module, mutate, message in [
        (flow_mnist, lambda c: setattr(c.data, 'dequantize', False), 'dequantize'),
        (flow_mnist, lambda c: setattr(c.model, 'num_scales', 4), 'num_scales'),
        (flow_mnist, lambda c: setattr(c.model, 'architecture', 'mlp'), 'realnvp'),
        (flow_mnist, lambda c: setattr(c.model, 'logit_alpha', 0.5), 'logit_alpha'),
        (flow_toy2d, lambda c: setattr(c.data, 'name', 'toy_bumps_1d'), '2 dimensions'),
        (flow_toy2d, lambda c: setattr(c.model, 'num_couplings', 1), 'num_couplings'),
        (flow_toy2d, lambda c: setattr(c.sampler, 'temperature', 0.0), 'temperature'),
    ]:
        config = module.get_config()
        mutate(config)
        with pytest.raises(ValueError, match=message):
            families.validated(config)
    own = set(families.resumable_keys(families.get('flow'))) - set(config_lib.RESUMABLE_KEYS)
    assert own == {'sampler.temperature', 'optimizer.learning_rate'}  # the latter: every family


def test_toy_smoke_run_learns_and_reports_the_exact_nll(tmp_path):
    config = flow_toy2d.get_config('smoke')
    config.train.num_steps = 60
    config.optimizer.learning_rate = 1e-2
    config.train.ema_rate = 0.0
    workdir = str(tmp_path / 'flow')
    result = trainer.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, 'eval.json')) as f:
        saved = json.load(f)
    for key in ('nll_nats', 'nll_bits_per_dim', 'kl_estimate_nats', 'true_nll_nats'):
        assert np.isfinite(saved[key]) and saved[key] == result[key]
    assert saved['family'] == 'flow' and saved['data_dequantized'] == 0
    assert math.isclose(saved['kl_estimate_nats'], saved['nll_nats'] - saved['true_nll_nats'])
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        logged = [json.loads(line) for line in f]
    losses = [r['nll_nats'] for r in logged if 'nll_nats' in r]
    assert losses[-1] < losses[0] - 0.3  # the likelihood of the moons rises
    assert os.path.getsize(os.path.join(workdir, 'figures', 'density.png')) > 0
