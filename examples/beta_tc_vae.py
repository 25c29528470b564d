"""beta-TC-VAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"): the VAE's KL
term split in three, with the total correlation weighted by `config.loss.beta`.

    E_p(n)[KL(q(z | n) || p(z))] = KL(q(z, n) || q(z) p(n))    (i)   index-code MI
                                 + KL(q(z) || prod_d q(z_d))    (ii)  total correlation
                                 + sum_d KL(q(z_d) || p(z_d))   (iii) dimension-wise KL (Chen Eq. 2)
    L = E_q(z|n)p(n)[log p(n | z)] - alpha (i) - beta (ii) - gamma (iii),  alpha = gamma = 1 (Eq. 4)

q(z) = (1/N) sum_n q(z | n) is the aggregate posterior of the N training examples. With one
z_i ~ q(z | n_i) per example of a minibatch {n_1 .. n_M}, the terms are the sample averages of
log q(z_i | n_i) - log q(z_i), log q(z_i) - log prod_d q(z_id) and log prod_d q(z_id) - log p(z_i),
with the marginals estimated by minibatch-weighted sampling (Chen Sec. 3.1, Eq. 3; Appendix C):

    log q(z_i)    ~= log sum_j q(z_i | n_j)    - log(N M)
    log q(z_id)   ~= log sum_j q(z_id | n_j)   - log(N M)       for each dimension d

The three estimates telescope: per example they sum to log q(z_i | n_i) - log p(z_i), a one-sample
estimate of the KL, so with beta = 1 the loss equals the ELBO objective's in expectation (that one
uses the closed-form KL against N(0, I)). Against a learned prior (VampPrior, configs/vae_mnist.py's
default) term (iii) is log prod_d q(z_id) - log p(z_i): Chen et al.'s dimension-wise KL needs a
factorised p(z), so (iii) there is KL(prod_d q(z_d) || p(z)), and the three still sum to the ELBO
objective's own one-sample KL. N is the size of config.data.train_split, M the global batch. Both
enter as constants, so they shift the three terms, never the gradients: each log q above is that
of the minibatch's own mixture (1/M) sum_j q(z | n_j) minus log N, so TC carries (D - 1) log N and
the loss (beta - 1)(D - 1) log N. Compare runs by elbo_nats, not by loss.

    .venv/bin/python train.py --config configs/vae_mnist.py --workdir workdirs/beta_tc --config.objective=examples.beta_tc_vae:beta_tc_elbo --config.loss.beta=6
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from genmodels import data
from genmodels.families import vae
from genmodels.nn import noise


def decompose(z: jax.Array, mean: jax.Array, log_var: jax.Array, dataset_size: int,
              log_pz: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-example estimates [M] of (i) MI, (ii) TC and (iii) dimension-wise KL at z [M, D],
    z_i ~ q(z | n_i) = N(mean_i, exp(log_var_i)); the batch is the minibatch of MWS. `log_pz`
    [M]: log p(z_i) under the model's prior, N(0, I) when None."""
    log_nm = math.log(dataset_size * z.shape[0])
    # log q(z_id | n_j) for every pair (i, j): [M, M, D]; row i mixes all the batch's posteriors.
    log_q_id_j = -0.5 * ((z[:, None] - mean[None]) ** 2 * jnp.exp(-log_var[None])
                         + log_var[None] + vae.LOG_2PI)
    log_qz_given_n = vae.log_normal(z, mean, log_var)
    log_qz = jax.nn.logsumexp(jnp.sum(log_q_id_j, axis=-1), axis=1) - log_nm
    log_prod_qzd = jnp.sum(jax.nn.logsumexp(log_q_id_j, axis=1) - log_nm, axis=-1)
    if log_pz is None:
        log_pz = jnp.sum(-0.5 * (z * z + vae.LOG_2PI), axis=-1)
    return log_qz_given_n - log_qz, log_qz - log_prod_qzd, log_prod_qzd - log_pz


def beta_tc_elbo(config, params, batch, rng: jax.Array, step: jax.Array) -> vae.Terms:
    x = batch['image']
    mean, log_var = vae.encode(config, params, x)
    # The ELBO objective's very draw, so that the two objectives compare sample for sample.
    eps = noise.normal(rng, batch['index'], (1, mean.shape[-1]))[:, 0]
    z = mean + jnp.exp(0.5 * log_var) * eps
    # 1. RECONSTRUCTION
    recon = vae.log_px_given_z(config, params, x, vae.decode(config, params, z))
    # 2. LATENT: (i) + beta (ii) + (iii). N is a Python int read while tracing (config is static).
    n = data.dataset_info(config.data).num_examples[config.data.train_split]
    log_pz = vae.log_p_drawn(config, params, z, rng, batch['index'])  # the ELBO objective's draw
    mi, tc, dwkl = decompose(z, mean, log_var, n, log_pz)
    penalty = mi + config.loss.beta * tc + dwkl
    # Warm-up scales the whole penalty, as it scales beta * KL in vae.elbo_objective, so that
    # beta = 1 stays the ELBO (in expectation) at every step.
    if config.loss.kl_warmup_steps > 0:
        penalty = penalty * jnp.minimum(1.0, step.astype(jnp.float32) / config.loss.kl_warmup_steps)
    kl = vae.latent_kl(config, mean, log_var, z, log_pz)
    return vae.Terms(loss=-(recon - penalty), elbo=recon - kl, recon=recon, kl=kl)
