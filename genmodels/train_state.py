"""The single-network training state: a plain dict pytree, and the optimizer built from the config.

    state = {'step': int32 [], 'params': ..., 'opt_state': ..., 'ema_params': ...}

Families with one network (autoencoder, VAE, DDPM) use it as is; a GAN keeps one `opt_state` per
player but reuses `make_optimizer` and `ema_update`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

PyTree = Any


def learning_rate_schedule(opt: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
    warmup = opt.warmup_steps
    if opt.schedule == 'constant':
        decay = optax.constant_schedule(opt.learning_rate)
    elif opt.schedule == 'cosine':
        decay = optax.cosine_decay_schedule(opt.learning_rate, max(num_steps - warmup, 1))
    else:
        raise ValueError(f'unknown optimizer.schedule {opt.schedule!r}; use constant or cosine.')
    if warmup == 0:
        return decay
    ramp = optax.linear_schedule(0.0, opt.learning_rate, warmup)
    return optax.join_schedules([ramp, decay], [warmup])


def make_optimizer(opt: ml_collections.ConfigDict, num_steps: int) -> optax.GradientTransformation:
    lr = learning_rate_schedule(opt, num_steps)
    if opt.name == 'adam':
        tx = optax.adam(lr, b1=opt.b1, b2=opt.b2)
    elif opt.name == 'adamw':
        tx = optax.adamw(lr, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)
    else:
        raise ValueError(f'unknown optimizer.name {opt.name!r}; use adam or adamw.')
    if opt.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
    return tx


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
    """One optimizer step plus the EMA update; returns the new state and the gradient norm."""
    tx = make_optimizer(config.optimizer, config.train.num_steps)
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    new_state = {
        'step': state['step'] + 1,
        'params': params,
        'opt_state': opt_state,
        'ema_params': ema_update(state['ema_params'], params, config.train.ema_rate),
    }
    return new_state, optax.global_norm(grads)
