"""One GAN step's two updates: D's (loss.n_disc of them, then G's, against the updated D).

D takes `loss.n_disc` steps per G step inside the jitted step, each with fresh noise and the same
real batch; its learning-rate schedule counts its own updates. Then G takes one step against the
updated D. Every image D sees, in either update, goes through DiffAugment (augment.py) when
loss.augment is set. Gradients go through `train_state.value_and_grad` (micro-batches when
train.grad_accum_steps > 1), so the loss functions see a batch dict of per-example arrays.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from genmodels import config as config_lib
from genmodels.families.gan.augment import AUGMENT_STREAM, diff_augment
from genmodels.families.gan.networks import Discriminator, Generator, generate, latents, networks
from genmodels.families.gan.objectives import (OBJECTIVES, info_lower_bound, info_weight_scale,
                                               r1_subset, top_k_fraction, top_k_mean)
from genmodels.nn import noise
from genmodels.training import train_state

PyTree = Any


class Players(NamedTuple):
    """What both updates of one step share."""
    g: Generator
    d: Discriminator
    tx_g: optax.GradientTransformation
    tx_d: optax.GradientTransformation  # counts D's own updates: n_disc per step
    objective: Callable                 # OBJECTIVES' entry config.objective names
    info: bool                          # InfoGAN's term on (model.info_* > 0)
    info_scale: jax.Array               # the factor on InfoGAN's lambdas at this step


def has_info(config) -> bool:
    return config.model.info_categorical > 0 or config.model.info_continuous > 0


def optimizers(config) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(G's optimizer, D's), D's schedule over its n_disc updates per step."""
    n = config.train.num_steps
    return (train_state.make_optimizer(config.optimizer, n),
            train_state.make_optimizer(config.disc_optimizer, n * config.loss.n_disc))


def players(config, image_shape, step: jax.Array) -> Players:
    tx_g, tx_d = optimizers(config)
    g, d = networks(config, image_shape)
    return Players(g, d, tx_g, tx_d, config_lib.objective(OBJECTIVES, config.objective),
                   has_info(config), info_weight_scale(config, step))


def critic_fn(config, d: Discriminator, params, stats, labels, aug_keys, seen=None):
    """x -> D's logits [B]. With a list `seen`, each call also appends (the images D saw, Q's
    outputs), so that InfoGAN's term reuses the objective's pass over the generated batch
    (`q_of`)."""
    def critic(x):
        shown = diff_augment(config, x, aug_keys)  # x itself when loss.augment is off
        logits, q = d.apply({'params': params, **stats}, shown, labels[:x.shape[0]])
        if seen is not None:
            seen.append((shown, q))
        return logits
    return critic


def q_of(d: Discriminator, seen, params, stats, fake, labels):
    """Q's outputs on the generated batch `fake`: from the critic's pass when D saw `fake`
    itself (not an augmented copy), else a pass of their own. One pass gives one backward pass
    through D's trunk for both terms; two passes gave two (XLA merges the repeated forward
    pass, not the two backward ones)."""
    for shown, q in seen:
        if shown is fake:
            return q
    return d.apply({'params': params, **stats}, fake, labels)[1]


def d_loss(config, p: Players, stats, key, params, mb):
    """D's objective loss, + R1, - InfoGAN's weighted bound; D's accuracies as metrics, and one
    power iteration of spectral norm as the new statistics."""
    seen = []
    critic = critic_fn(config, p.d, params, stats, mb['labels'],
                       noise.keys(jax.random.fold_in(key, AUGMENT_STREAM), mb['index']), seen)
    d_losses, _ = p.objective(config, critic, mb['real'], mb['fake'],
                              noise.keys(key, mb['index']))
    terms = {'d_loss': jnp.mean(d_losses)}
    total = terms['d_loss']
    if config.loss.r1_weight > 0:
        terms['r1'] = r1_subset(config, critic, mb['real'])
        total += 0.5 * config.loss.r1_weight * terms['r1']
    if p.info:
        q = q_of(p.d, seen, params, stats, mb['fake'], mb['labels'])
        terms['info_bound'] = jnp.mean(info_lower_bound(config, q, mb['codes']))
        total -= p.info_scale * jnp.mean(info_lower_bound(config, q, mb['codes'],
                                                          weighted=True))
    # Accuracy of D's decision l > 0 (real) on both sets; one power iteration of SN.
    if stats:
        (l_real, _), new_stats = p.d.apply({'params': params, **stats}, mb['real'],
                                           mb['labels'], update_stats=True, mutable=list(stats))
    else:
        (l_real, _), new_stats = p.d.apply({'params': params}, mb['real'], mb['labels']), {}
    terms['d_real_accuracy'] = jnp.mean(l_real > 0)
    terms['d_fake_accuracy'] = jnp.mean(critic(mb['fake']) < 0)
    return total, (terms, {}, new_stats)


def d_update(config, p: Players, g_vars, carry, real, index, labels, rng, i: int):
    """D's i-th step of this step against fresh G(z) (G's variables `g_vars` held fixed):
    ((D's variables, D's optimizer state), metrics)."""
    d_vars, d_opt = carry
    key = jax.random.fold_in(rng, i)
    g_in, codes = latents(config, key, index)
    fake, _ = generate(config, p.g, train_state.for_compute(config, g_vars), g_in, labels,
                       train=True)
    fake = jax.lax.stop_gradient(fake)
    stats = {k: v for k, v in d_vars.items() if k != 'params'}
    micro = {'real': real, 'fake': fake, 'index': index, 'labels': labels, 'codes': codes}
    (_, (terms, _, new_stats)), grads = train_state.value_and_grad(
        config, functools.partial(d_loss, config, p, stats, key), d_vars['params'], micro)
    params, d_opt = train_state.apply_updates(p.tx_d, d_vars['params'], d_opt, grads)
    terms['d_grad_norm'] = optax.global_norm(grads)
    return ({**d_vars, **new_stats, 'params': params}, d_opt), terms


def g_loss(config, p: Players, g_vars, d_vars, g_key, step, g_params, mb):
    """G's objective loss (its top k when loss.top_k < 1), - InfoGAN's weighted bound."""
    d_stats = {k: v for k, v in d_vars.items() if k != 'params'}
    fake, new_g = generate(config, p.g, {**g_vars, 'params': g_params}, mb['g_in'],
                           mb['labels'], train=True)
    aug_keys = noise.keys(jax.random.fold_in(g_key, AUGMENT_STREAM), mb['index'])
    seen = []
    _, g_losses = p.objective(
        config, critic_fn(config, p.d, d_vars['params'], d_stats, mb['labels'], aug_keys, seen),
        mb['real'], fake, noise.keys(g_key, mb['index']))
    aux = {'g_loss': jnp.mean(g_losses)}
    if config.loss.top_k < 1:
        total = top_k_mean(g_losses, top_k_fraction(config, step))
    else:
        total = aux['g_loss']
    if p.info:
        q = q_of(p.d, seen, d_vars['params'], d_stats, fake, mb['labels'])
        total -= p.info_scale * jnp.mean(info_lower_bound(config, q, mb['codes'],
                                                          weighted=True))
    return total, (aux, {}, new_g)


def g_update(config, p: Players, state, d_vars, real, index, labels, rng):
    """G's step against the updated D `d_vars`: ({'g', 'g_opt', 'g_ema'} of the new state,
    metrics)."""
    g_key = jax.random.fold_in(rng, config.loss.n_disc)
    g_in, codes = latents(config, g_key, index)
    micro = {'g_in': g_in, 'real': real, 'index': index, 'labels': labels, 'codes': codes}
    loss_fn = functools.partial(g_loss, config, p, state['g'],
                                train_state.for_compute(config, d_vars), g_key, state['step'])
    (_, (terms, _, new_g)), grads = train_state.value_and_grad(
        config, loss_fn, state['g']['params'], micro)
    g_params, g_opt = train_state.apply_updates(p.tx_g, state['g']['params'], state['g_opt'],
                                                grads)
    new = {'g': {**new_g, 'params': g_params}, 'g_opt': g_opt,
           'g_ema': train_state.ema_update(state['g_ema'], g_params, config.train.ema_rate)}
    return new, {**terms, 'g_grad_norm': optax.global_norm(grads)}
