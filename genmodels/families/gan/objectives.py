"""The GAN's objectives, D's regularisers, top-k G updates and InfoGAN's mutual-information term.

    min_G max_D V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))]        (Goodfellow et al., Eq. 1)

D outputs a logit l (D = sigmoid(l)); each objective of OBJECTIVES gives D's and G's per-example
losses from l on real and generated data:

    minimax          D: -log D(x) - log(1 - D(G(z)))   G: log(1 - D(G(z)))   (saturating, Eq. 1)
    non_saturating   D: as minimax                     G: -log D(G(z))       (Goodfellow Sec. 3)
    hinge            D: relu(1 - l(x)) + relu(1 + l(G(z)))  G: -l(G(z))     (Lim & Ye 2017)
    least_squares    D: ((l(x) - 1)^2 + l(G(z))^2) / 2      G: (l(G(z)) - 1)^2 / 2
                     (Mao et al. 2017)
    wgan_gp          D: l(G(z)) - l(x) + w (|grad l(x_hat)| - 1)^2, x_hat = e x + (1 - e) G(z),
                     e ~ U[0, 1]                             G: -l(G(z))
                     (Gulrajani et al. 2017, Alg. 1)
    relativistic     D: softplus(l(G(z)) - l(x))  G: softplus(l(x) - l(G(z))), x and z paired by
                     row (relativistic pairing; Jolicoeur-Martineau 2019, Huang et al. 2024)

R1 = r1_weight / 2 |grad_x l(x)|^2 on real data (Mescheder et al. 2018, Eq. 9) regularises D under
any objective, optionally estimated on a share loss.r1_fraction of the batch (its double backward
pass is the costliest part of a conv step).

Top-k G updates (Sinha et al. 2020): G's loss averages only the fraction of its samples with the
lowest G loss (those D finds most real), from all of them at the start to loss.top_k after
loss.top_k_decay_steps; the rest, e.g. points between two modes, whose gradient points toward no
mode, give no gradient (the top k of each micro-batch under train.grad_accum_steps).

InfoGAN (Chen et al. 2016): Q, a head on D's trunk, predicts the codes c joined to z, and
    L_I = E[log Q(c | G(z, c))] + H(c) <= I(c; G(z, c))                 (Chen et al., Eq. 5)
(cross-entropy for the categorical code, a unit-variance Gaussian log-likelihood for continuous
ones); G and Q (D's parameters) both maximise lambda L_I, with lambda = loss.info_weight on the
categorical code's term and loss.info_continuous_weight on the continuous codes' (Chen et al.
set 1 for discrete codes and smaller values for continuous ones, whose log-likelihood is on a
different scale). With loss.info_decay_fraction f, both lambdas fall linearly to 0 over the last
f of train.num_steps. On a grid of separate modes a many-way code lets each category settle on
one mode, and Q, which must tell apart the categories that share a mode, keeps pushing them
apart, off their mode; fading lambda out at the end lets the modes close up (results:
docs/results/gan.md).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

LOG_2PI = math.log(2.0 * math.pi)


def info_lower_bound(config, q: jax.Array, codes: dict[str, jax.Array],
                     weighted: bool = False) -> jax.Array:
    """L_I = E log Q(c | x) + H(c) per example [B], nats (Chen et al. Eq. 5); Q's outputs q
    [B, K + n]: categorical logits, then continuous means of unit-variance Gaussians. H(c) =
    log K + n log 2 for the uniform categorical and the U[-1, 1] codes. weighted: the loss's
    lambda L_I instead, the categorical term times loss.info_weight and the continuous one times
    loss.info_continuous_weight."""
    m = config.model
    weights = ((config.loss.info_weight, config.loss.info_continuous_weight) if weighted
               else (1.0, 1.0))
    bound = jnp.zeros(q.shape[0])
    if m.info_categorical:
        log_q = jax.nn.log_softmax(q[:, :m.info_categorical])
        term = jnp.take_along_axis(log_q, codes['categorical'][:, None], 1)[:, 0]
        bound += weights[0] * (term + math.log(m.info_categorical))
    if m.info_continuous:
        mean = q[:, m.info_categorical:]
        term = jnp.sum(-0.5 * (codes['continuous'] - mean) ** 2 - 0.5 * LOG_2PI, -1)
        bound += weights[1] * (term + m.info_continuous * math.log(2.0))
    return bound


# ------------------------------------------------------------------------------------------------
# Objectives: (config, critic, real, fake, keys) -> (D's loss [B], G's loss [B]). `critic` maps
# images [B, H, W, C] to logits [B]; `keys` are per-example keys [B] for any noise the objective
# draws. A caller differentiates D's loss in D's parameters (fake held fixed) and G's loss
# through `fake` in G's.

def _minimax(config, critic, real, fake, keys):
    l_real, l_fake = critic(real), critic(fake)
    d_loss = -jax.nn.log_sigmoid(l_real) - jax.nn.log_sigmoid(-l_fake)
    return d_loss, jax.nn.log_sigmoid(-l_fake)  # G minimises log(1 - D(G(z)))


def _non_saturating(config, critic, real, fake, keys):
    d_loss, _ = _minimax(config, critic, real, fake, keys)
    return d_loss, -jax.nn.log_sigmoid(critic(fake))


def _hinge(config, critic, real, fake, keys):
    l_fake = critic(fake)
    return jax.nn.relu(1.0 - critic(real)) + jax.nn.relu(1.0 + l_fake), -l_fake


def _least_squares(config, critic, real, fake, keys):
    l_fake = critic(fake)
    return 0.5 * ((critic(real) - 1.0) ** 2 + l_fake ** 2), 0.5 * (l_fake - 1.0) ** 2


def gradient_penalty(critic, real, fake, keys) -> jax.Array:
    """(|grad l(x_hat)| - 1)^2 per example [B] at x_hat = e x + (1 - e) G(z), e ~ U[0, 1]."""
    e = jax.vmap(jax.random.uniform)(keys).reshape((-1,) + (1,) * (real.ndim - 1))
    x_hat = e * real + (1.0 - e) * fake
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat)  # rows are independent: per example
    norm = jnp.sqrt(jnp.sum(grads ** 2, axis=tuple(range(1, grads.ndim))) + 1e-12)
    return (norm - 1.0) ** 2


def _wgan_gp(config, critic, real, fake, keys):
    l_fake = critic(fake)
    gp = gradient_penalty(critic, real, fake, keys)
    return l_fake - critic(real) + config.loss.gp_weight * gp, -l_fake


def _relativistic(config, critic, real, fake, keys):
    margin = critic(real) - critic(fake)
    return jax.nn.softplus(-margin), jax.nn.softplus(margin)


OBJECTIVES: dict[str, Callable] = {
    'minimax': _minimax,
    'non_saturating': _non_saturating,
    'hinge': _hinge,
    'least_squares': _least_squares,
    'wgan_gp': _wgan_gp,
    'relativistic': _relativistic,
}


def info_weight_scale(config, step: jax.Array) -> jax.Array:
    """The factor on InfoGAN's lambdas at G step `step` (0-based): 1, then falling linearly over
    the last n = loss.info_decay_fraction * train.num_steps steps, to 1 / n at the last step (1
    throughout when n rounds to 0)."""
    n = round(config.loss.info_decay_fraction * config.train.num_steps)
    if n == 0:
        return jnp.ones(())
    return jnp.clip((config.train.num_steps - step) / n, 0.0, 1.0)


def top_k_mean(losses: jax.Array, fraction: jax.Array) -> jax.Array:
    """Mean of the ceil(fraction * B) smallest of `losses` [B] (ties at the cut all count)."""
    k = jnp.clip(jnp.ceil(fraction * losses.shape[0]).astype(jnp.int32), 1, losses.shape[0])
    keep = losses <= jnp.sort(losses)[k - 1]
    return jnp.sum(jnp.where(keep, losses, 0.0)) / jnp.sum(keep)


def top_k_fraction(config, step: jax.Array) -> jax.Array:
    """The fraction of G's samples its update keeps at G step `step`: 1 falling linearly to
    loss.top_k over loss.top_k_decay_steps (at once when 0)."""
    final, steps = config.loss.top_k, config.loss.top_k_decay_steps
    progress = jnp.minimum(step / steps, 1.0) if steps > 0 else 1.0
    return 1.0 - (1.0 - final) * progress


def r1_penalty(critic, real) -> jax.Array:
    """|grad_x l(x)|^2 per example [B] on real data (Mescheder et al. 2018)."""
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(real)
    return jnp.sum(grads ** 2, axis=tuple(range(1, grads.ndim)))


def r1_subset(config, critic, real) -> jax.Array:
    """Batch mean of R1 estimated on the first ceil(loss.r1_fraction * B) real examples, an
    unbiased estimate (batches are shuffled) whose double backward pass costs that fraction of
    the full one. Lazy R1 on every k-th update (Karras et al. 2020) needs a lax.cond, and
    XLA:CPU runs the convolutions inside a cond branch with its slow generic kernel (6.2 s
    against 1.4 s at the top level, DCGAN batch 128), so the saving here comes from fewer rows."""
    n = max(1, math.ceil(config.loss.r1_fraction * real.shape[0]))
    return jnp.mean(r1_penalty(critic, real[:n]))
