"""Train-step options every deep family gets through train_state.value_and_grad.

train.grad_accum_steps: k micro-batches inside one jitted step equal one step on the whole batch
(per-example noise is keyed by the example's index, so the draws agree). train.compute_dtype =
'bfloat16': matmuls and convolutions in bfloat16, weights and optimizer state in float32, and a loss
curve that tracks float32's."""

import copy
import re

import jax
import numpy as np
import pytest

from configs import cdcgan_mnist, classifier_mnist
from genmodels import data, families
from genmodels.families import gan
from genmodels.training import parallel, train_state
from tests.helpers import DDPM_TOY, VAE, jitted_init, smoke_config
from tests.test_gan import small


def _classifier(data_dir):
    config = classifier_mnist.get_config()
    config.data.data_dir = data_dir
    config.model.channels = (4, 8)
    config.model.features = 16
    config.model.dropout = 0.0  # dropout masks are drawn per call, not per example
    return config


def _gan(data_dir):
    """An MLP InfoGAN with a projection head, spectral norm, R1 and two D steps: every term of the
    D and G losses (a batch-norm G normalises micro-batches with their own statistics)."""
    config = small(cdcgan_mnist.get_config(), data_dir)
    config.model.architecture = 'mlp'
    config.model.hidden = (32,)
    config.model.latent_dim = 8
    config.model.info_categorical = 3
    config.model.info_continuous = 2
    config.model.spectral_norm = True
    config.loss.r1_weight = 0.1
    config.loss.n_disc = 2
    return config


def _init(family, config):
    return jitted_init(family, config, jax.random.key(0),
                       train_state.example_batch(data.dataset_info(config.data)))


# The VAE, the classifier's convolutions, the GAN's two players and the DDPM step (the toy's MLP:
# a U-Net compiles for 20 s and runs the same DDPM step). The autoencoder's step has the VAE's shape.
CONFIGS = {'vae': lambda data_dir: smoke_config('vae_mnist', data_dir, VAE),
           'classifier': _classifier, 'gan': _gan,
           'ddpm_toy': lambda data_dir: smoke_config('ddpm_grid25', data_dir, DDPM_TOY)}


@pytest.mark.parametrize('name', list(CONFIGS))
def test_accumulated_step_equals_the_large_batch_step(name, data_dir):
    config = CONFIGS[name](data_dir)
    family = families.validated(config)
    batch_size = 16
    batch = next(data.train_iterator(config.data, batch_size, seed=0))
    state = _init(family, config)
    results = {}
    for k in (1, 4):
        c = copy.deepcopy(config)
        c.train.grad_accum_steps = k
        families.validated(c)
        data.check_batch_size(batch_size, k)
        step = jax.jit(lambda s, b, c=c: family.train_step(c, s, b, jax.random.key(1)))
        results[k] = jax.device_get(step(state, batch))
    (state_1, metrics_1), (state_4, metrics_4) = results[1], results[4]
    assert set(metrics_1) == set(metrics_4)
    for key in metrics_1:
        np.testing.assert_allclose(metrics_4[key], metrics_1[key], rtol=2e-5, atol=1e-6,
                                   err_msg=key)
    flat_1 = jax.tree_util.tree_flatten_with_path(state_1)[0]
    for (path, a), b in zip(flat_1, jax.tree.leaves(state_4), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    assert any(not np.array_equal(a, b)  # the step did something
               for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state_1), strict=True))


def test_batch_that_does_not_split_into_micro_batches_is_a_clear_error():
    with pytest.raises(ValueError, match='does not split into train.grad_accum_steps=3 '
                                         'micro-batches'):
        data.check_batch_size(16, 3)


def _losses(config, family, num_steps: int) -> tuple[list[float], str, dict]:
    """Loss per step of `num_steps` jitted steps from init, the step's compiled HLO, final state."""
    state = _init(family, config)
    batches = data.train_iterator(config.data, config.train.batch_size, seed=0)
    step = jax.jit(lambda s, b, i: family.train_step(config, s, b, jax.random.fold_in(
        jax.random.key(1), i)))
    first = next(batches)
    hlo = step.lower(state, first, 0).as_text()
    losses, batch = [], first
    for i in range(num_steps):
        state, metrics = step(state, batch, i)
        losses.append(float(metrics['loss' if 'loss' in metrics else 'd_loss']))
        batch = next(batches)
    return losses, hlo, state


@pytest.mark.parametrize('name', ['vae', 'classifier', 'gan', 'ddpm_toy'])
def test_bfloat16_compute_tracks_the_float32_loss_curve(name, data_dir):
    config = CONFIGS[name](data_dir)
    config.train.batch_size = 32
    family = families.validated(config)
    curves, hlos, states = {}, {}, {}
    for dtype in ('float32', 'bfloat16'):
        c = copy.deepcopy(config)
        c.train.compute_dtype = dtype
        families.validated(c)
        curves[dtype], hlos[dtype], states[dtype] = _losses(c, family, 30)
    # bfloat16 matmuls or convolutions are in the bfloat16 program only; every float leaf of the
    # state (weights, optimizer moments, EMA, statistics) stays float32.
    low = r'stablehlo\.(dot_general|convolution)[^\n]*xbf16>'
    assert re.search(low, hlos['bfloat16']) and 'bf16' not in hlos['float32']
    assert {x.dtype for x in jax.tree.leaves(states['bfloat16'])
            if np.issubdtype(x.dtype, np.floating)} == {np.dtype(np.float32)}
    f32, bf16 = np.asarray(curves['float32']), np.asarray(curves['bfloat16'])
    # Same start (the same initial weights, rounded), and over the last 10 steps the same level.
    np.testing.assert_allclose(bf16[0], f32[0], rtol=0.02)
    np.testing.assert_allclose(bf16[-10:].mean(), f32[-10:].mean(), rtol=0.05)
    if name == 'gan':  # D's spectrally normalised layers compute in bfloat16 too
        dtypes = {}
        for dtype in ('float32', 'bfloat16'):
            c = copy.deepcopy(config)
            c.train.compute_dtype = dtype
            batch = train_state.example_batch(data.dataset_info(c.data))
            _, d = gan.networks(c, batch['image'].shape[1:])
            d_vars = states[dtype]['d']

            def loss_fn(params, batch, d=d, dtype=dtype):
                logits, _ = d.apply({**d_vars, 'params': params}, batch['image'], batch['label'])
                dtypes[dtype] = logits.dtype
                return logits.mean().astype('float32'), ({}, {}, None)

            jax.jit(lambda p, c=c, f=loss_fn: train_state.value_and_grad(c, f, p, batch))(
                d_vars['params'])
        assert dtypes == {'float32': np.dtype('float32'), 'bfloat16': np.dtype('bfloat16')}
    if name == 'vae':  # a curve that moves in 30 steps: both fall alike
        assert f32[-10:].mean() < 0.97 * f32[0] and bf16[-10:].mean() < 0.97 * bf16[0]


def test_remat_recomputes_in_the_compiled_step_and_holds_less_memory(data_dir):
    """train.remat = 'blocks' survives XLA's compiler: the compiled train step runs the coupling
    nets' layers again in the backward pass and needs less temporary memory, and its step equals
    the plain step. (XLA:CPU's cse_barrier_expander once merged the recomputation back into the
    forward pass, leaving the two programs identical: xla_cpu.remat_options.)"""
    compiled, states = {}, {}
    for remat in ('none', 'blocks'):
        config = smoke_config('flow_toy2d', data_dir, {'train.remat': remat,
                                                        'model.hidden': 64})
        family = families.validated(config)
        mesh = parallel.make_mesh()
        example = train_state.example_batch(data.dataset_info(config.data))
        state = train_state.init_state(config, family, mesh, example)
        batch = parallel.shard_batch(mesh, next(data.train_iterator(
            config.data, config.train.batch_size, config.data.seed)))
        step = train_state.make_train_step(config, family, mesh, state)
        compiled[remat] = step.lower(state, batch).compile()
        states[remat] = compiled[remat](state, batch)[0]
    dots = {k: len(re.findall(r' dot\(', c.as_text())) for k, c in compiled.items()}
    temp = {k: c.memory_analysis().temp_size_in_bytes for k, c in compiled.items()}
    assert dots['blocks'] > dots['none'], dots
    assert temp['blocks'] < 0.8 * temp['none'], temp
    for a, b in zip(jax.tree.leaves(states['none']), jax.tree.leaves(states['blocks']),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
