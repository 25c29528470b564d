"""EDM (Karras, Aittala, Aila & Laine 2022, "Elucidating the design space of diffusion-based
generative models"): a denoiser D(x; sigma) of data x_0 seen through Gaussian noise of standard
deviation sigma, x = x_0 + sigma n (the variance-exploding process), with its preconditioning,
training distribution, loss weight, noise levels and samplers.

Preconditioning (Table 1, "Ours"), around a raw network F:

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))
    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)      c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in   = 1 / sqrt(sigma^2 + sigma_data^2)             c_noise = ln(sigma) / 4

For data of standard deviation sigma_data, the network's input c_in x and its effective target
(x_0 - c_skip x) / c_out both have unit variance at every sigma (tests/test_edm.py checks both).

Training (Sec. 5): ln sigma ~ N(P_mean, P_std^2) and the loss lambda(sigma) || D(x; sigma) - x_0 ||^2
with lambda = 1 / c_out^2 = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2, which is
|| F - (x_0 - c_skip x) / c_out ||^2: unit weight on what the network itself outputs.

Sampling (Alg. 2) follows the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma over the
levels sigma_0 > ... > sigma_{N-1} > sigma_N = 0 of the Karras schedule (Eq. 5)

    sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,

by Euler steps or Heun's (Euler's step, then the trapezoid correction with D at the next level; the
step to sigma = 0 stays Euler: 2N - 1 evaluations of D). With churn S_churn > 0 each step whose level
lies in [S_tmin, S_tmax] first adds noise to raise it to sigma_hat = (1 + gamma) sigma_i,
gamma = min(S_churn / N, sqrt(2) - 1): x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) S_noise n.
S_churn = 0 is the deterministic sampler.
"""

from __future__ import annotations

import math
import re
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Denoiser = Callable[[jax.Array, jax.Array], jax.Array]  # D(x [B, ...], sigma [] ) -> [B, ...]

SAMPLERS = {'euler': False, 'heun': True}  # name -> second order


class Preconditioning(NamedTuple):
    c_skip: jax.Array
    c_out: jax.Array
    c_in: jax.Array
    c_noise: jax.Array


def preconditioning(sigma: jax.Array, sigma_data: float) -> Preconditioning:
    """EDM's c_skip, c_out, c_in and c_noise at `sigma` (any shape)."""
    sigma = jnp.asarray(sigma, jnp.float32)
    total = sigma ** 2 + sigma_data ** 2
    return Preconditioning(sigma_data ** 2 / total, sigma * sigma_data / jnp.sqrt(total),
                           1.0 / jnp.sqrt(total), jnp.log(sigma) / 4.0)


def loss_weight(sigma: jax.Array, sigma_data: float) -> jax.Array:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float) -> np.ndarray:
    """The N levels of Eq. 5 from sigma_max down to sigma_min, then sigma_N = 0: [N + 1] float32
    (one step, N = 1, goes from sigma_max straight to 0)."""
    ramp = np.linspace(0.0, 1.0, num_steps) if num_steps > 1 else np.zeros(1)
    hi, lo = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    levels = (hi + ramp * (lo - hi)) ** rho
    return np.append(levels, 0.0).astype(np.float32)


class SamplerName(NamedTuple):
    second_order: bool
    num_steps: int


def parse_sampler(name: str) -> SamplerName:
    """'heun18' -> Heun over 18 levels (35 evaluations); 'euler35' -> Euler over 35."""
    parsed = re.fullmatch(rf'({"|".join(SAMPLERS)})(\d+)', str(name))
    if not parsed or int(parsed.group(2)) < 1:
        raise ValueError(f'EDM sampler name {name!r} must be euler<N> or heun<N> with N >= 1 '
                         f'levels, e.g. heun18.')
    return SamplerName(SAMPLERS[parsed.group(1)], int(parsed.group(2)))


def num_evaluations(second_order: bool, num_steps: int) -> int:
    """D's evaluations (NFE) of a sampler: Heun's 2N - 1 (the last step is Euler's), Euler's N."""
    return 2 * num_steps - 1 if second_order else num_steps


def sample(denoise: Denoiser, x: jax.Array, sigmas: np.ndarray, rng: jax.Array, *,
           second_order: bool, churn: float = 0.0, s_tmin: float = 0.0,
           s_tmax: float = math.inf, s_noise: float = 1.0, keep: int = 0):
    """Alg. 2 from x [B, ...] at sigmas[0] (x = sigmas[0] n) down the levels `sigmas` [N + 1]
    (the last 0) in one `lax.scan`. With keep > 0 also returns x after `keep` evenly spaced steps
    [keep, B, ...] (the last is the result)."""
    num_steps = len(sigmas) - 1
    levels = jnp.asarray(sigmas, jnp.float32)
    gamma_max = min(churn / num_steps, math.sqrt(2.0) - 1.0)

    def step(x, i):
        sigma, sigma_next = levels[i], levels[i + 1]
        if gamma_max > 0:
            gamma = jnp.where((sigma >= s_tmin) & (sigma <= s_tmax), gamma_max, 0.0)
            sigma_hat = sigma * (1.0 + gamma)
            n = jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype)
            # sqrt(sigma_hat^2 - sigma^2), written so that gamma = 0 adds exactly nothing
            x = x + sigma * jnp.sqrt(gamma * (2.0 + gamma)) * s_noise * n
        else:
            sigma_hat = sigma
        d = (x - denoise(x, sigma_hat)) / sigma_hat
        euler = x + (sigma_next - sigma_hat) * d
        if second_order:
            def corrected(_):
                d_next = (euler - denoise(euler, sigma_next)) / sigma_next
                return x + (sigma_next - sigma_hat) * 0.5 * (d + d_next)

            euler = jax.lax.cond(sigma_next > 0, corrected, lambda _: euler, None)
        return euler, (euler if keep else None)

    x, xs = jax.lax.scan(step, x, jnp.arange(num_steps))
    if not keep:
        return x
    kept = np.linspace(0, num_steps - 1, keep).round().astype(int)
    return x, xs[kept]


def probability_flow(denoise: Denoiser) -> Callable:
    """field(x, tau) of the probability-flow ODE in tau = ln sigma: dx/dsigma = (x - D) / sigma,
    so dx/dtau = x - D(x; e^tau). The likelihood integrates tau from ln sigma_min (the data) up to
    ln sigma_max, where the base is N(0, sigma_max^2 I)."""
    def field(x, tau):
        return x - denoise(x, jnp.exp(jnp.asarray(tau, jnp.float32)))

    return field
