"""The training state: a plain dict pytree, its optimizers, its keys, and several seeds of it.

A one-network family's state (autoencoder, VAE, DDPM) is

    state = {'step': int32 [], 'params': ..., 'opt_state': ..., 'ema_params': ...}

made by `create` and advanced by `apply_gradients`. A family with more networks (a GAN's two
players) keeps one optimizer state per network and calls `make_optimizer` and `apply_updates` for
each, with its own schedule length.

Keys. Lane s of a run (s = 0 .. train.num_seeds - 1) has the model key key(config.seed + s):

    init:               fold_in(model_key, 0)
    train step t:       fold_in(fold_in(model_key, 1), t)
    evaluation:         fold_in(model_key, 2)
    FID during training fold_in(fold_in(model_key, 4), t)
    progress figures    fold_in(model_key, 5), the same at every step: fixed noise

The data stream is keyed by data.seed alone, so it is shared by every lane. Lane s of a run with
num_seeds = S is therefore the run with num_seeds = 1 and seed = config.seed + s (same data.seed).
With num_seeds > 1 every leaf of the state has a leading seed axis [S] (`step` too); the trainer
vmaps `init` and `train_step` over it, so inside a family `step` is a scalar as always.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genmodels import data, xla_cpu
from genmodels.config import ConfigError
from genmodels.training import checkpoint, parallel

PyTree = Any

# fold_in tags of the model key (see the docstring)
INIT, TRAIN, EVAL, TRAIN_FID, PROGRESS = 0, 1, 2, 4, 5


def learning_rate_schedule(opt: ml_collections.ConfigDict, num_updates: int) -> optax.Schedule:
    warmup = opt.warmup_steps
    if opt.schedule == 'constant':
        decay = optax.constant_schedule(opt.learning_rate)
    elif opt.schedule == 'cosine':
        decay = optax.cosine_decay_schedule(opt.learning_rate, max(num_updates - warmup, 1))
    else:
        raise ValueError(f'unknown schedule {opt.schedule!r}; use constant or cosine.')
    if warmup == 0:
        return decay
    ramp = optax.linear_schedule(0.0, opt.learning_rate, warmup)
    return optax.join_schedules([ramp, decay], [warmup])


def make_optimizer(opt: ml_collections.ConfigDict, num_updates: int
                   ) -> optax.GradientTransformation:
    """The optimizer of a section with the optimizer schema; schedules run over `num_updates`
    (the updates this optimizer makes, e.g. n_disc * num_steps for a GAN's discriminator)."""
    lr = learning_rate_schedule(opt, num_updates)
    if opt.name == 'adam':
        tx = optax.adam(lr, b1=opt.b1, b2=opt.b2)
    elif opt.name == 'adamw':
        tx = optax.adamw(lr, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)
    else:
        raise ValueError(f'unknown optimizer name {opt.name!r}; use adam or adamw.')
    if opt.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
    return tx


def apply_updates(tx: optax.GradientTransformation, params: PyTree, opt_state: PyTree,
                  grads: PyTree) -> tuple[PyTree, PyTree]:
    """One step of `tx`: (params, opt_state) -> (new params, new opt_state)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def create(config: ml_collections.ConfigDict, params: PyTree) -> dict[str, PyTree]:
    tx = make_optimizer(config.optimizer, config.train.num_steps)
    return {
        'step': jnp.zeros((), jnp.int32),
        'params': params,
        'opt_state': tx.init(params),
        'ema_params': jax.tree.map(jnp.copy, params),
    }


def ema_update(ema: PyTree, params: PyTree, rate: float) -> PyTree:
    return jax.tree.map(lambda e, p: rate * e + (1.0 - rate) * p, ema, params)


def apply_gradients(config: ml_collections.ConfigDict, state: dict[str, PyTree], grads: PyTree
                    ) -> tuple[dict[str, PyTree], jax.Array]:
    """One optimizer step plus the EMA update of a `create`d state; returns the new state and the
    gradient norm."""
    tx = make_optimizer(config.optimizer, config.train.num_steps)
    params, opt_state = apply_updates(tx, state['params'], state['opt_state'], grads)
    new_state = {
        'step': state['step'] + 1,
        'params': params,
        'opt_state': opt_state,
        'ema_params': ema_update(state['ema_params'], params, config.train.ema_rate),
    }
    return new_state, optax.global_norm(grads)


COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


# The layers whose float inputs a low compute dtype casts: where the FLOPs are.
LOW_PRECISION_LAYERS = (nn.Dense, nn.DenseGeneral, nn.Conv, nn.ConvTranspose, nn.Einsum)


def _cast_floats(tree: PyTree, dtype) -> PyTree:
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x,
        tree)


def _layers_in(dtype) -> Callable:
    """A flax method interceptor casting the float inputs of LOW_PRECISION_LAYERS to `dtype`."""
    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == '__call__' and isinstance(context.module, LOW_PRECISION_LAYERS):
            args = _cast_floats(args, dtype)
        return next_fun(*args, **kwargs)
    return interceptor


def value_and_grad(config: ml_collections.ConfigDict, loss_fn: Callable, params: PyTree,
                   batch: dict[str, jax.Array]) -> tuple[tuple[jax.Array, tuple], PyTree]:
    """`jax.value_and_grad(loss_fn, has_aux=True)(params, batch)` with mixed precision and
    gradient accumulation.

    loss_fn(params, batch) -> (loss, (means, per_example, last)): `loss` is a mean over the
    examples of `batch` (a dict of [B, ...] arrays); `means` a pytree of such means (metrics);
    `per_example` a pytree of [B, ...] arrays; `last` anything else (e.g. updated batch-norm or
    spectral-norm statistics).

    With train.grad_accum_steps = k > 1 the batch is cut into k micro-batches (rows j, j + k,
    j + 2k, ... form micro-batch j, so each device keeps its own rows) and one lax.scan adds
    their gradients: loss, means and gradients are the micro-batch averages, which equal the
    large-batch step's up to float rounding when the loss's randomness is keyed per example
    (genmodels.nn.noise), and only B/k examples' activations are live at a time. `per_example` comes
    back in batch order; `last` is the last micro-batch's (batch-norm statistics are then those of
    B/k examples, as with any accumulation).

    With train.compute_dtype = 'bfloat16', loss_fn sees the parameters in bfloat16 and every
    Dense/Conv layer (LOW_PRECISION_LAYERS) gets its inputs cast to bfloat16 (a flax method
    interceptor, so no family code changes): the matmuls and convolutions, where the FLOPs are, run
    in bfloat16 and emit bfloat16 activations, while inputs, noise and the loss's own arithmetic
    stay float32. The gradient flows back through the cast to the float32 parameters, so master
    weights and optimizer state stay float32 (Micikevicius et al. 2018; bfloat16 has float32's
    exponent range, so no loss scaling is needed). Aux outputs come back in float32.

    With train.param_sharding = 'fsdp', loss_fn sees the parameters gathered whole and the
    gradients come back split like the optimizer state (`parallel.gathered`, `fsdp_split`).
    """
    if for_fsdp(config):
        # Parameters gathered where the layers use them, gradients reduce-scattered back.
        (loss, aux), grads = _value_and_grad(config, loss_fn, parallel.gathered(params), batch)
        return (loss, aux), parallel.fsdp_split(grads)
    return _value_and_grad(config, loss_fn, params, batch)


def for_fsdp(config: ml_collections.ConfigDict) -> bool:
    """train.param_sharding is 'fsdp' (a fit family's config has no such key: replicated)."""
    return config.train.get('param_sharding', 'replicated') == 'fsdp'


def for_compute(config: ml_collections.ConfigDict, variables: PyTree) -> PyTree:
    """Another network's variables as a loss uses them without differentiating them (a GAN's
    other player): gathered whole under fsdp (`parallel.gathered`), else as they are."""
    return parallel.gathered(variables) if for_fsdp(config) else variables


def _value_and_grad(config: ml_collections.ConfigDict, loss_fn: Callable, params: PyTree,
                    batch: dict[str, jax.Array]) -> tuple[tuple[jax.Array, tuple], PyTree]:
    dtype = COMPUTE_DTYPES[config.train.compute_dtype]
    if dtype != jnp.float32:
        low_precision_fn = loss_fn

        def loss_fn(params, batch):
            with nn.intercept_methods(_layers_in(dtype)):
                loss, aux = low_precision_fn(_cast_floats(params, dtype), batch)
            return loss.astype(jnp.float32), _cast_floats(aux, jnp.float32)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    k = config.train.grad_accum_steps
    if k == 1:
        return grad_fn(params, batch)

    def split(x):  # [B, ...] -> [k, B/k, ...], micro-batch j = rows j::k
        return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)

    def join(x):  # the inverse of split
        return jnp.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:])

    def body(grads, micro):
        (loss, (means, per_example, last)), g = grad_fn(params, micro)
        return jax.tree.map(jnp.add, grads, g), (loss, means, per_example, last)

    zeros = jax.tree.map(jnp.zeros_like, params)
    grads, (loss, means, per_example, last) = jax.lax.scan(
        body, zeros, jax.tree.map(split, batch))
    average = lambda tree: jax.tree.map(lambda x: jnp.mean(x, axis=0), tree)  # noqa: E731
    return ((jnp.mean(loss), (average(means), jax.tree.map(join, per_example),
                              jax.tree.map(lambda x: x[-1], last))),
            jax.tree.map(lambda g: g / k, grads))


def step_by_noise_level(config: ml_collections.ConfigDict, state: dict[str, PyTree],
                        batch: dict[str, jax.Array], rng: jax.Array, objective: Callable,
                        quarter: Callable[[jax.Array], jax.Array]
                        ) -> tuple[dict[str, PyTree], dict[str, jax.Array]]:
    """One optimizer step of a denoising objective, the DDPM's or the score family's:
    objective(config, params, batch, rng, dropout_rng) -> (loss [B], noise level [B]) per example.
    Logs `loss`, `grad_norm` and loss_q0..loss_q3, the loss by quarter of the noise levels
    (quarter(level) -> 0..3, q0 the least noise; Nichol & Dhariwal log it so)."""
    k_obj, k_drop = jax.random.split(rng)

    def loss_fn(params, batch):
        loss, level = objective(config, params, batch, k_obj, k_drop)
        return jnp.mean(loss), ({}, (loss, level), None)

    (loss, (_, (per_example, level), _)), grads = value_and_grad(config, loss_fn,
                                                                 state['params'], batch)
    new_state, grad_norm = apply_gradients(config, state, grads)
    metrics = {'loss': loss, 'grad_norm': grad_norm}
    which = quarter(level)
    for q in range(4):
        mask = which == q
        metrics[f'loss_q{q}'] = jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1)
    return new_state, metrics


# ------------------------------------------------------------------------------------------------
# Keys and seed lanes

def model_key(config: ml_collections.ConfigDict, lane: int = 0) -> jax.Array:
    return jax.random.key(config.seed + lane)


def num_seeds(config: ml_collections.ConfigDict) -> int:
    """train.num_seeds; a fit family (no training loop, no such key) has one."""
    return config.train.num_seeds if 'num_seeds' in config.train else 1


def model_keys(config: ml_collections.ConfigDict) -> jax.Array:
    """The model key of every lane: a scalar key with one seed, else keys [S]."""
    if num_seeds(config) == 1:
        return model_key(config)
    return jnp.stack([model_key(config, s) for s in range(num_seeds(config))])


def over_seeds(config: ml_collections.ConfigDict, fn: Callable, in_axes) -> Callable:
    """`fn` for one lane -> a function of all lanes: vmapped over the leading seed axis of the
    arguments marked 0 in `in_axes` when num_seeds > 1, else `fn` itself."""
    return fn if num_seeds(config) == 1 else jax.vmap(fn, in_axes=in_axes)


def lanes(config: ml_collections.ConfigDict, tree: PyTree) -> list[PyTree]:
    """[lane 0, lane 1, ...] of a state (or metrics) with a seed axis; [tree] with one seed."""
    if num_seeds(config) == 1:
        return [tree]
    return [jax.tree.map(lambda x, s=s: x[s], tree) for s in range(num_seeds(config))]


# ------------------------------------------------------------------------------------------------
# Building the state

def example_batch(info: data.DatasetInfo) -> dict[str, np.ndarray]:
    """One all-zero example: what `init` needs to build the networks for this dataset."""
    return {'image': np.zeros((1,) + info.shape, np.float32), 'label': np.zeros((1,), np.int32),
            'index': np.zeros((1,), np.int32)}


def _init_lanes(config: ml_collections.ConfigDict, family, example: dict) -> Callable:
    """keys -> family.init for every lane (see the key rule above)."""
    def init_lane(key):
        return family.init(config, jax.random.fold_in(key, INIT), example)

    return over_seeds(config, init_lane, 0)


def init_state(config: ml_collections.ConfigDict, family, mesh, example: dict) -> PyTree:
    """family.init for every lane, laid out over the mesh as `abstract_state` says."""
    target = abstract_state(config, family, mesh, example)
    init = jax.jit(_init_lanes(config, family, example),
                   out_shardings=jax.tree.map(lambda x: x.sharding, target))
    return init(model_keys(config))


def shardings(config: ml_collections.ConfigDict, mesh, shapes: PyTree) -> PyTree:
    """The state's NamedShardings: replicated, or fsdp (genmodels/training/parallel.py)."""
    return parallel.state_shardings(mesh, shapes, 'fsdp' if for_fsdp(config) else 'replicated')


def abstract_state(config: ml_collections.ConfigDict, family, mesh, example: dict) -> PyTree:
    """Shapes, dtypes and shardings (train.param_sharding) of the state, without computing it:
    what a checkpoint is restored onto, whatever the device count and layout it was saved with."""
    shapes = jax.eval_shape(_init_lanes(config, family, example), model_keys(config))
    return checkpoint.abstract(shapes, shardings(config, mesh, shapes))


def restore_or_init(config: ml_collections.ConfigDict, family, example: dict, mngr,
                    start_weights: Callable[[], dict] | None = None) -> tuple[PyTree, int]:
    """(state, step): the newest good checkpoint of `mngr`, else a new state at step 0, its
    weights those `start_weights()` gives when given (train.init_from); laid out over the mesh of
    every device."""
    mesh = parallel.make_mesh()
    state, start = checkpoint.restore_newest_good(
        mngr, abstract_state(config, family, mesh, example))
    if state is None:
        state, start = init_state(config, family, mesh, example), 0
        if start_weights is not None:
            state = {**state, **start_weights()}
    return state, start


# ------------------------------------------------------------------------------------------------
# Starting from another run's weights (train.init_from)

def weights(state: PyTree) -> dict[str, PyTree]:
    """A state's weights: its dict-valued entries (params and their EMA; a GAN's g, d and g_ema,
    batch statistics included), not its step or its optimizer states (optax's tuples)."""
    return {k: v for k, v in state.items() if isinstance(v, Mapping)}


def weights_for(config: ml_collections.ConfigDict, family, example: dict,
                source_config: ml_collections.ConfigDict, source_state: PyTree) -> dict:
    """The weights of `source_state` (another run's, train.init_from) as this run's initial
    weights, laid out as its state is; a single-seed source starts every seed lane. ConfigError
    (one line) when they cannot: another family, or a leaf of another shape."""
    where = f'train.init_from={config.train.init_from}'
    if source_config.family != config.family:
        raise ConfigError(f'{where} is a {source_config.family} run; give a {config.family} run '
                          f'of the same model.')
    lanes = num_seeds(config)
    got = weights(source_state)
    if np.ndim(source_state['step']) == 0 and lanes > 1:
        got = jax.tree.map(lambda x: jnp.broadcast_to(x, (lanes,) + x.shape), got)
    target = weights(abstract_state(config, family, parallel.make_mesh(), example))
    have = dict(jax.tree_util.tree_flatten_with_path(got)[0])
    for path, want in jax.tree_util.tree_flatten_with_path(target)[0]:
        name = jax.tree_util.keystr(path)
        if path not in have:
            raise ConfigError(f'{where} has no weight {name}: give a run of the same model.')
        if have[path].shape != want.shape or have[path].dtype != want.dtype:
            raise ConfigError(f'{where}: its weight {name} is {have[path].dtype}'
                              f'{list(have[path].shape)}, this model\'s {want.dtype}'
                              f'{list(want.shape)}; give a run of the same model (and seeds).')
    if len(have) != len(jax.tree.leaves(target)):
        raise ConfigError(f'{where} holds weights this model lacks: give a run of the same '
                          f'model.')
    return jax.tree.map(lambda x, t: jax.device_put(x, t.sharding), got, target)


def make_train_step(config: ml_collections.ConfigDict, family, mesh, state: PyTree) -> Callable:
    """jit(train_step) over all seed lanes, with the batch sharded P('data') and shared by the
    lanes, the state (laid out as `state` is) donated. Step t of lane s gets the key
    fold_in(fold_in(key(config.seed + s), 1), t), whatever the device count and layout."""
    def lane_step(state, batch, key):
        rng = jax.random.fold_in(jax.random.fold_in(key, TRAIN), state['step'])
        if not for_fsdp(config):
            return family.train_step(config, state, batch, rng)
        with parallel.batch_split_layers(mesh, LOW_PRECISION_LAYERS):
            return family.train_step(config, state, batch, rng)

    keys = model_keys(config)
    step = over_seeds(config, lane_step, in_axes=(0, None, 0))
    state_sharding = jax.tree.map(lambda x: x.sharding, state)
    remat = config.train.remat != 'none'
    return jax.jit(lambda state, batch: step(state, batch, keys),
                   in_shardings=(state_sharding, parallel.data_sharding(mesh)),
                   out_shardings=(state_sharding, parallel.replicated(mesh)), donate_argnums=0,
                   compiler_options=xla_cpu.remat_options() if remat else None)


def host_train_step(config: ml_collections.ConfigDict, family, state: PyTree) -> Callable:
    """`make_train_step` on the mesh of every device for a state laid out as `state`, taking
    this process's host batch (numpy), which it places as its rows of the global batch."""
    mesh = parallel.make_mesh()
    step = make_train_step(config, family, mesh, state)
    return lambda state, host_batch: step(state, parallel.shard_batch(mesh, host_batch))


# ------------------------------------------------------------------------------------------------
# A fitted state (classical families: closed form or EM)

FIT_STEP = 1  # a fitted state is saved once, as step 1


def fitted_state(params: PyTree) -> PyTree:
    """{'step': FIT_STEP, 'params': params}, replicated over the mesh of every device."""
    params = jax.device_put(params, parallel.replicated(parallel.make_mesh()))
    return {'step': jnp.asarray(FIT_STEP, jnp.int32), 'params': jax.block_until_ready(params)}


def restore_fitted(mngr) -> PyTree | None:
    """The fitted state saved in `mngr`, with the shapes it was saved with (they depend on the
    data), replicated; None if there is none."""
    state, _ = checkpoint.restore_as_saved(mngr, parallel.replicated(parallel.make_mesh()))
    return state
