"""The DDPM denoisers: the sinusoidal embedding against its formula, shapes at even and odd sizes,
where attention sits, dependence on t, label and dropout, and that every parameter of a tiny U-Net
learns when it fits a fixed batch.

Compiling, not running, dominates these tiny models on CPU, so shapes are checked by tracing alone
(`jax.eval_shape`), the numeric tests share one model, and programs compile at XLA's lowest backend
optimisation level (2-4x faster to compile; the results are the same maths).
"""

import math
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genmodels.nn import unet

TINY = dict(channels=8, channel_mults=(1, 2), num_res_blocks=1)
jit = partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})


def _shapes(model, x_shape, labels=None):
    """(params tree of ShapeDtypeStructs, output shape), traced without compiling or running."""
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    t = jnp.arange(x_shape[0]) * 97
    out, variables = jax.eval_shape(model.init_with_output, jax.random.key(0), x, t, labels)
    return variables['params'], out.shape


def _randomise_zeros(params, seed: int = 0, scale: float = 0.1):
    """Replaces every all-zero leaf (zero-initialised convs and projections, biases) with noise, so
    that the residual branches, the attention and the output conv all reach the output."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda p: p if np.any(p) else (scale * rng.normal(size=p.shape)).astype(np.float32), params)


def test_timestep_embedding_matches_the_formula():
    t = jnp.array([0, 1, 10, 999])
    emb = np.asarray(unet.timestep_embedding(t, 16))
    assert emb.shape == (4, 16)
    np.testing.assert_array_equal(emb[0, :8], 0.0)                           # sin(0)
    np.testing.assert_array_equal(emb[0, 8:], 1.0)                           # cos(0)
    freqs = np.exp(-math.log(10000) * np.arange(8) / 8)
    args = np.array([0, 1, 10, 999])[:, None] * freqs
    np.testing.assert_allclose(emb, np.concatenate([np.sin(args), np.cos(args)], -1), atol=1e-4)
    distances = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    assert np.all(distances[~np.eye(4, dtype=bool)] > 0.1)
    np.testing.assert_array_equal(unet.timestep_embedding(t.astype(jnp.float32), 16), emb)
    odd = np.asarray(unet.timestep_embedding(t, 7))
    assert odd.shape == (4, 7)
    np.testing.assert_array_equal(odd[:, 6], 0.0)
    np.testing.assert_array_equal(odd[:, :6], unet.timestep_embedding(t, 6))


def test_num_groups_is_the_largest_divisor_up_to_32_with_two_channels_a_group():
    widths = (1, 2, 3, 6, 8, 24, 48, 64, 96, 100, 128, 129)
    assert [unet.num_groups(c) for c in widths] == [1, 1, 1, 3, 4, 12, 24, 32, 32, 25, 32, 3]


@pytest.mark.parametrize('num_classes, twice', [(0, False), (10, True)])
@pytest.mark.parametrize('hwc', [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
def test_unet_output_shape(hwc, num_classes, twice):
    """Unconditional with out_channels C, and conditional with 2C (a learned variance)."""
    c_out = 2 * hwc[2] if twice else None
    model = unet.UNet(**TINY, attention_resolutions=(hwc[0] // 2,), num_classes=num_classes,
                      out_channels=c_out)
    labels = jnp.array([0, num_classes]) if num_classes else None
    _, shape = _shapes(model, (2, *hwc), labels)
    assert shape == (2, *hwc[:2], c_out or hwc[2])


@pytest.mark.parametrize('hw', [(7, 7), (28, 28), (9, 6), (1, 1)])
def test_unet_odd_sizes_come_back_to_the_input_size(hw):
    """28 -> 14 -> 7 -> 4 -> 7 -> 14 -> 28; 9 -> 5 -> 3 -> 5 -> 9: resized to each skip's size."""
    model = unet.UNet(channels=8, channel_mults=(1, 2, 2, 2), num_res_blocks=1,
                      attention_resolutions=())
    assert _shapes(model, (2, *hw, 1))[1] == (2, *hw, 1)


def test_upsampling_equals_nearest_neighbour_resize_then_conv():
    """Exact doubling (its own code path) and 4x3 -> 7x5 both match jax.image.resize."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 3, 5)).astype(np.float32)
    conv = {'kernel': rng.normal(size=(3, 3, 5, 5)).astype(np.float32),
            'bias': rng.normal(size=(5,)).astype(np.float32)}

    @jit
    def outputs(x, conv):
        got, want = [], []
        for size in [(8, 6), (7, 5)]:
            got.append(unet.Upsample().apply({'params': {'conv': conv}}, x, size))
            resized = jax.image.resize(x, (2, *size, 5), 'nearest')
            want.append(nn.Conv(5, (3, 3)).apply({'params': conv}, resized))
        return got, want

    for got, want in zip(*outputs(x, conv)):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_attention_sits_at_the_configured_resolutions():
    def attended(resolutions):
        model = unet.UNet(channels=8, channel_mults=(1, 2, 2), num_res_blocks=2,
                          attention_resolutions=resolutions)
        return {name for name in _shapes(model, (2, 28, 28, 1))[0] if '_attn' in name}

    assert attended(()) == {'mid_attn'}            # Ho et al.: the middle always attends.
    assert attended((7,)) == {'mid_attn', 'down_2_attn_0', 'down_2_attn_1', 'up_2_attn_0',
                              'up_2_attn_1', 'up_2_attn_2'}
    assert {name.rsplit('_attn', 1)[0] for name in attended((14, 28))} == {
        'down_0', 'up_0', 'down_1', 'up_1', 'mid'}
    with pytest.raises(ValueError, match=r'\[16\].*level sizes \[28, 14, 7\]'):
        attended((16,))


@pytest.fixture(scope='module')
def conditional():
    """A tiny conditional U-Net with dropout and attention, a batch of one image at four (t, label)
    pairs (label 3 is "no label"), its initial params and a jitted apply(params, seed, train)."""
    model = unet.UNet(**TINY, attention_resolutions=(4,), num_classes=3, dropout=0.5)
    x = jnp.tile(jax.random.normal(jax.random.key(0), (1, 8, 8, 1)), (4, 1, 1, 1))
    t, labels = jnp.array([5, 5, 5, 600]), jnp.array([0, 1, 3, 0])
    params = jit(model.init)(jax.random.key(1), x, t, labels)['params']

    @partial(jit, static_argnames='train')
    def apply(params, seed=0, train=False):
        return model.apply({'params': params}, x, t, labels, train=train,
                           rngs={'dropout': jax.random.key(seed)})

    return model, x, t, labels, params, apply


def test_unet_output_depends_on_t_and_label(conditional):
    _, x, t, labels, params, apply = conditional
    np.testing.assert_array_equal(apply(params), 0.0)                  # Zero-initialised output.
    out = np.asarray(apply(_randomise_zeros(params)))
    differences = np.abs(out[:, None] - out[None]).max(axis=(2, 3, 4))   # [4, 4]
    assert np.all(differences[~np.eye(4, dtype=bool)] > 1e-2), differences
    with pytest.raises(ValueError, match='unconditional'):
        _shapes(unet.UNet(**TINY, attention_resolutions=()), x.shape, labels)


def test_no_labels_means_the_null_label():
    model = unet.Conditioning(features=8, sinusoid_dim=6, num_classes=3)
    t = jnp.array([1, 7])

    @jit
    def embed(key):
        variables = model.init(key, t, None)
        return [model.apply(variables, t, labels) for labels in (None, jnp.array([3, 3]),
                                                                 jnp.array([0, 0]))]

    unlabelled, null, zero = embed(jax.random.key(0))
    np.testing.assert_array_equal(unlabelled, null)
    assert not np.allclose(unlabelled, zero)


def test_dropout_is_random_in_training_only(conditional):
    *_, params, apply = conditional
    params = _randomise_zeros(params)
    assert not np.allclose(apply(params, 0, True), apply(params, 1, True), atol=1e-4)
    np.testing.assert_array_equal(apply(params, 0, True), apply(params, 0, True))
    np.testing.assert_array_equal(apply(params, 0, False), apply(params, 1, False))
    assert not np.allclose(apply(params, 0, False), apply(params, 0, True), atol=1e-4)


def test_mlp_denoiser_shapes_and_dependence_on_t_and_label():
    x = jnp.tile(jnp.array([[0.5, -1.0]]), (3, 1)).reshape(3, 2, 1, 1)
    t = jnp.array([0, 0, 40])
    for num_classes, out_channels in [(0, None), (0, 2), (4, None)]:
        model = unet.MLPDenoiser(hidden=(32, 32), embed_dim=16, num_classes=num_classes,
                                 out_channels=out_channels)
        labels = jnp.array([0, 4, 0]) if num_classes else None
        out = np.asarray(jit(lambda key: model.apply(model.init(key, x, t, labels), x, t, labels))(
            jax.random.key(0)))
        assert out.shape == (3, 2, 1, out_channels or 1)
        assert not np.allclose(out[0], out[2], atol=1e-4)              # t = 0 vs t = 40.
        if num_classes:
            assert not np.allclose(out[0], out[1], atol=1e-4)          # Label 0 vs no label.
        else:
            np.testing.assert_array_equal(out[0], out[1])


def test_tiny_unet_fits_a_fixed_batch_through_every_parameter(conditional):
    """Adam on a fixed (x, t, label) -> target batch cuts the MSE 5x, and every parameter leaf,
    the zero-initialised ones and those behind them included, moves: no path is cut off."""
    model, x, t, labels, params, _ = conditional
    model = model.clone(dropout=0.0)
    x = x + jax.random.normal(jax.random.key(2), x.shape)
    target = jax.random.normal(jax.random.key(3), x.shape)
    opt = optax.adam(1e-2)

    def loss_fn(p):
        return jnp.mean((model.apply({'params': p}, x, t, labels) - target) ** 2)

    @jit
    def step(p, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(p, updates), opt_state, loss

    trained, opt_state, losses = params, opt.init(params), []
    for _ in range(40):  # A Python loop: lax.scan compiles no faster and runs 20x slower at -O0.
        trained, opt_state, loss = step(trained, opt_state)
        losses.append(float(loss))
    np.testing.assert_allclose(losses[0], np.mean(np.square(target)), rtol=1e-6)   # Output 0.
    assert losses[-1] < losses[0] / 5, losses
    frozen = [jax.tree_util.keystr(path) for (path, before), after in zip(
        jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(trained))
        if np.array_equal(before, after)]
    assert not frozen, frozen


def test_remat_blocks_give_the_same_parameters_outputs_and_gradients():
    """train.remat = 'blocks' recomputes each residual and attention block in the backward pass:
    the same parameter tree (checkpoints move between the two), and the same gradients, dropout
    included."""
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    t = jnp.array([3, 7])
    keys = {'params': jax.random.key(1), 'dropout': jax.random.key(2)}
    nets = [unet.UNet(8, (1, 2), 1, (4,), dropout=0.1, remat=remat) for remat in (False, True)]
    trees = [jax.tree.map(jnp.shape, jax.eval_shape(net.init, keys, x, t)) for net in nets]
    # Away from the initialisation, whose zero output convolutions stop most gradients; compiled
    # whole (op by op, the init and this took 40 s).
    params = jax.jit(lambda k: jax.tree.map(
        lambda p: p + 0.1 * jnp.sin(jnp.arange(p.size).reshape(p.shape)), nets[0].init(k, x, t)))(
            keys)
    grads = []
    for net in nets:
        def loss(p, net=net):
            out = net.apply(p, x, t, train=True, rngs={'dropout': jax.random.key(3)})
            return jnp.sum(out ** 2)

        grads.append(jax.jit(jax.grad(loss))(params))
    assert trees[0] == trees[1]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # recomputed: float rounding
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads[0]))
