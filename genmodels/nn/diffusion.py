"""Gaussian diffusion (Ho et al. 2020; Nichol & Dhariwal 2021; Song et al. 2021), as pure functions.

Timesteps are 0-indexed: t = 0 .. T-1 here is the paper's t = 1 .. T, and alpha-bar of "t = -1" (the
data) is 1. With alpha_t = 1 - beta_t and ab_t = prod_{s <= t} alpha_s:

    q(x_t | x_0)          = N(sqrt(ab_t) x_0, (1 - ab_t) I)                          (Ho Eq. 4)
    q(x_s | x_t, x_0)     = N(c0 x_0 + ct x_t, var_small),  s < t, with b = 1 - ab_t / ab_s,
        c0 = sqrt(ab_s) b / (1 - ab_t),  ct = sqrt(ab_t / ab_s) (1 - ab_s) / (1 - ab_t),
        var_small = b (1 - ab_s) / (1 - ab_t)                                  (Ho Eqs. 6-7; s = t-1)

The same formulas with s the previous kept timestep give the respaced chains of Nichol & Dhariwal
(Sec. 4): a sampler of S steps keeps S timesteps and jumps between them. Reverse steps:

    ancestral  x_s = c0 x0_hat + ct x_t + sigma z,  sigma^2 = var_small ('fixed_small') or
               b ('fixed_large'; Ho Sec. 3.2: both are optimal for some data)
    DDIM       x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps_hat + sigma z,
               sigma^2 = eta^2 var_small                                   (Song et al. Eq. 12, 16)

DDIM with eta = 1 has ancestral's fixed_small mean and variance, so the two chains agree in
distribution. The last step (to s = -1) returns x0_hat without noise. The reverse steps and chains
live in genmodels/nn/samplers.py.

Prediction targets (the network's output): 'eps' (Ho), 'x0', and 'v' = sqrt(ab) eps - sqrt(1 - ab) x0
(Salimans & Ho 2022); `predict` turns any of them into (eps_hat, x0_hat) for the current x_t.

The variational bound (Ho Eq. 5), in nats per example, summed over dimensions:

    -log p(x_0) <= KL(q(x_{T-1} | x_0) || N(0, I))                              prior
                   + sum_{t >= 1} KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))   one term per t
                   - log p(x_0 | x_t=0)                                         decoder

with the decoder a Gaussian (variance: `decoder_variance`) over the data: discretised to the data's levels for images (Ho Eq. 13:
the mass of the level's bin, the end bins stretched to infinity), or the density for continuous data.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

from genmodels.nn import noise

LOG_2PI = math.log(2.0 * math.pi)


# ------------------------------------------------------------------------------------------------
# Schedules: name -> (num_timesteps, beta_start, beta_end) -> betas [T], float64

def linear_betas(num_timesteps: int, beta_start: float, beta_end: float) -> np.ndarray:
    """beta_t evenly from beta_start to beta_end (Ho et al.: 1e-4 .. 0.02 over T = 1000)."""
    return np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int, beta_start: float = 0.0, beta_end: float = 0.0,
                 offset: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """ab(t) = f(t) / f(0), f(t) = cos((t / T + s) / (1 + s) * pi / 2)^2, s = 0.008, betas clipped at
    0.999 (Nichol & Dhariwal Eq. 17). beta_start and beta_end are not used."""
    del beta_start, beta_end
    steps = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    f = np.cos((steps + offset) / (1.0 + offset) * math.pi / 2.0) ** 2
    return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


SCHEDULES: dict[str, Callable[..., np.ndarray]] = {
    'linear': linear_betas,
    'cosine': cosine_betas,
}
PREDICTIONS = ('eps', 'x0', 'v')
VARIANCES = ('fixed_small', 'fixed_large')


class Schedule(NamedTuple):
    """A noise schedule's tables, float64 numpy arrays [T]."""
    betas: np.ndarray
    alphas_cumprod: np.ndarray

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)


def rescale_to_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Lin et al. 2024, Alg. 1: shift and scale sqrt(ab_t) so that it keeps its first value and
    ends at exactly 0 (SNR_T = 0, so x_T carries no trace of the data, as at sampling), then read
    the betas back off; the last beta is 1. Train it with v or x0 prediction: eps cannot give x_0
    at SNR 0."""
    root = np.sqrt(np.cumprod(1.0 - np.asarray(betas, np.float64)))
    first, last = root[0], root[-1]
    alphas_cumprod = ((root - last) * first / (first - last)) ** 2
    alphas = np.concatenate([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    return 1.0 - alphas


def make_schedule(name: str, num_timesteps: int, beta_start: float, beta_end: float,
                  zero_terminal_snr: bool = False) -> Schedule:
    if name not in SCHEDULES:
        raise ValueError(f'unknown schedule {name!r}; known: {", ".join(SCHEDULES)}.')
    betas = np.asarray(SCHEDULES[name](num_timesteps, beta_start, beta_end), np.float64)
    if zero_terminal_snr:
        betas = rescale_to_zero_terminal_snr(betas)
    inner = betas[:-1] if zero_terminal_snr else betas
    if not (np.all(betas > 0) and np.all(inner < 1)):
        raise ValueError(f'the {name} schedule has betas outside (0, 1): '
                         f'[{betas.min()}, {betas.max()}].')
    alphas_cumprod = np.cumprod(1.0 - betas)
    if zero_terminal_snr:
        alphas_cumprod[-1] = 0.0
    return Schedule(betas, alphas_cumprod)


class Steps(NamedTuple):
    """Per-step coefficients of a reverse chain over kept timesteps t_0 < ... < t_{S-1}, each step
    going from t_i to s_i = t_{i-1} (s_0 = -1: the data): float32 arrays [S], from float64 tables."""
    t: np.ndarray          # int32 timestep t_i
    ab_t: np.ndarray
    ab_s: np.ndarray
    c0: np.ndarray         # posterior mean coefficient of x_0
    ct: np.ndarray         # posterior mean coefficient of x_t
    var_small: np.ndarray  # posterior variance (0 at the last step)
    var_large: np.ndarray  # b = 1 - ab_t / ab_s


def steps(sched: Schedule, timesteps: np.ndarray) -> Steps:
    t = np.asarray(timesteps, np.int64)
    if np.any(np.diff(t) <= 0) or t[0] < 0 or t[-1] >= sched.num_timesteps:
        raise ValueError(f'timesteps must increase within [0, {sched.num_timesteps}), got {t}.')
    ab_t = sched.alphas_cumprod[t]
    ab_s = np.concatenate([[1.0], ab_t[:-1]])
    b = 1.0 - ab_t / ab_s
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return Steps(t=t.astype(np.int32), ab_t=f32(ab_t), ab_s=f32(ab_s),
                 c0=f32(np.sqrt(ab_s) * b / (1.0 - ab_t)),
                 ct=f32(np.sqrt(ab_t / ab_s) * (1.0 - ab_s) / (1.0 - ab_t)),
                 var_small=f32(b * (1.0 - ab_s) / (1.0 - ab_t)), var_large=f32(b))


def respaced(num_timesteps: int, num_steps: int) -> np.ndarray:
    """num_steps timesteps evenly spaced over [0, T-1], both ends kept (all T when equal)."""
    _check_steps(num_timesteps, num_steps)
    return np.unique(np.round(np.linspace(0, num_timesteps - 1, num_steps)).astype(np.int64))


def _nearest_distinct(table: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The timesteps (indices of the increasing `table`) nearest each of the increasing `targets`,
    pushed apart where neighbours collide, within [0, len(table) - 1]."""
    last, num = len(table) - 1, len(targets)
    t = np.round(np.interp(targets, table, np.arange(len(table)))).astype(np.int64)
    for i in range(1, num):                                    # strictly increasing ...
        t[i] = max(t[i], t[i - 1] + 1)
    for i in range(num - 1, -1, -1):                           # ... within [0, T - 1]
        t[i] = min(t[i], last - (num - 1 - i))
    return t


def respaced_logsnr(alphas_cumprod, num_steps: int) -> np.ndarray:
    """num_steps distinct timesteps over [0, T-1], both ends kept, evenly spaced in the log
    signal-to-noise ratio lambda = log(alpha / sigma) rather than in t (Lu et al. 2022's spacing
    for DPM-Solver), each at the timestep nearest its lambda."""
    ab = np.asarray(alphas_cumprod, np.float64)
    _check_steps(len(ab), num_steps)
    minus_lam = -0.5 * np.log(ab / (1.0 - ab))                 # increasing in t
    return _nearest_distinct(minus_lam, np.linspace(minus_lam[0], minus_lam[-1], num_steps))


def respaced_karras(alphas_cumprod, num_steps: int, rho: float = 7.0) -> np.ndarray:
    """num_steps distinct timesteps over [0, T-1] at EDM's noise levels (Karras et al. 2022,
    Eq. 5): sigma_i = (sigma_max^(1/rho) + i / (S - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
    sigma = sqrt((1 - ab) / ab), each at the timestep nearest its sigma (as EDM does for iDDPM's
    discrete levels)."""
    ab = np.asarray(alphas_cumprod, np.float64)
    _check_steps(len(ab), num_steps)
    sigma = np.sqrt((1.0 - ab) / ab)                           # increasing in t
    ramp = np.linspace(0.0, 1.0, num_steps)
    levels = (sigma[0] ** (1 / rho) + ramp * (sigma[-1] ** (1 / rho) - sigma[0] ** (1 / rho))) ** rho
    return _nearest_distinct(sigma, levels)


def _check_steps(num_timesteps: int, num_steps: int) -> None:
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f'a sampler needs 1 to {num_timesteps} steps, got {num_steps}.')


# How a sampler's kept timesteps are spread over [0, T-1]: evenly in t, evenly in log SNR, or at
# EDM's noise levels; each sampler kind has its own default (DEFAULT_SPACING, else 'uniform').
SPACINGS = ('uniform', 'logsnr', 'karras')
DEFAULT_SPACING = {'dpmpp2m': 'logsnr', 'heun': 'karras'}


def resolved_spacing(kind: str, spacing: str = '') -> str:
    """The SPACINGS name a sampler of `kind` uses: `spacing`, or when '' the kind's default."""
    return spacing or DEFAULT_SPACING.get(kind, 'uniform')


def kept_timesteps(sched: Schedule, kind: str, num_steps: int, spacing: str = '') -> np.ndarray:
    """The timesteps a sampler of `kind` visits, spread by `spacing` (a SPACINGS name; '': the
    kind's default, DPM-Solver++ evenly in log SNR, Heun at EDM's noise levels, the others evenly
    in t)."""
    spacing = resolved_spacing(kind, spacing)
    if spacing == 'logsnr':
        return respaced_logsnr(sched.alphas_cumprod, num_steps)
    if spacing == 'karras':
        return respaced_karras(sched.alphas_cumprod, num_steps)
    if spacing != 'uniform':
        raise ValueError(f'spacing {spacing!r}: expected one of {SPACINGS} or \'\'.')
    return respaced(sched.num_timesteps, num_steps)


def _col(a: jax.Array, ndim: int) -> jax.Array:
    """[B] (or scalar) -> broadcastable against [B, ...] of rank ndim."""
    a = jnp.asarray(a)
    return a.reshape(a.shape + (1,) * (ndim - a.ndim))


# ------------------------------------------------------------------------------------------------
# Forward process and parameterisations

def q_sample(x0: jax.Array, ab_t: jax.Array, eps: jax.Array) -> jax.Array:
    """x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps; ab_t [B] or scalar."""
    ab = _col(ab_t, x0.ndim)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps


def target(prediction: str, x0: jax.Array, eps: jax.Array, ab_t: jax.Array) -> jax.Array:
    """What a network with this prediction target should output for (x_0, eps)."""
    if prediction == 'eps':
        return eps
    if prediction == 'x0':
        return x0
    if prediction == 'v':
        ab = _col(ab_t, x0.ndim)
        return jnp.sqrt(ab) * eps - jnp.sqrt(1.0 - ab) * x0
    raise ValueError(f'unknown prediction {prediction!r}; known: {PREDICTIONS}.')


def predict(prediction: str, out: jax.Array, x_t: jax.Array, ab_t: jax.Array
            ) -> tuple[jax.Array, jax.Array]:
    """(eps_hat, x0_hat) from the network output `out` at x_t (inverts `target`)."""
    ab = _col(ab_t, x_t.ndim)
    a, s = jnp.sqrt(ab), jnp.sqrt(1.0 - ab)
    if prediction == 'eps':
        return out, (x_t - s * out) / a
    if prediction == 'x0':
        return (x_t - a * out) / s, out
    if prediction == 'v':
        return s * x_t + a * out, a * x_t - s * out
    raise ValueError(f'unknown prediction {prediction!r}; known: {PREDICTIONS}.')


def min_snr_weight(prediction: str, ab_t: jax.Array, gamma: float) -> jax.Array:
    """The min-SNR-gamma weight (Hang et al. 2023, Eq. 10) for a loss on `prediction`'s target:
    the x0 loss weighted by min(SNR, gamma), SNR = ab / (1 - ab), expressed for each target,

        x0: min(SNR, gamma)    eps: min(SNR, gamma) / SNR    v: min(SNR, gamma) / (SNR + 1)

    (|eps - eps_hat|^2 = SNR |x0 - x0_hat|^2 and |v - v_hat|^2 = (SNR + 1) |x0 - x0_hat|^2)."""
    snr = ab_t / (1.0 - ab_t)
    clipped = jnp.minimum(snr, gamma)
    if prediction == 'x0':
        return clipped
    if prediction == 'eps':
        return clipped / snr
    if prediction == 'v':
        return clipped / (snr + 1.0)
    raise ValueError(f'unknown prediction {prediction!r}; known: {PREDICTIONS}.')


def eps_from_x0(x_t: jax.Array, x0: jax.Array, ab_t: jax.Array) -> jax.Array:
    ab = _col(ab_t, x_t.ndim)
    return (x_t - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)


def probability_flow(eps_fn: Callable, alphas_cumprod) -> Callable:
    """The probability-flow ODE (Song et al. 2021, Eq. 13; DDIM's ODE) of the process whose
    marginal at timestep k is N(sqrt(ab_k) x_0, (1 - ab_k) I), in continuous time s in [0, T - 1]:

        dx/ds = (log ab)'(s) / 2 * (x - eps(x, s) / sqrt(1 - ab(s)))

    Its flow carries the marginal at s to the marginal at every later s', for any continuously
    differentiable log ab(s); here the cubic Hermite interpolant of log ab_k through the integers
    with central-difference slopes (one-sided at the ends), so a solver's step may straddle
    timesteps (a piecewise-linear log ab would put a kink at every integer, where a step is only
    first-order accurate). `eps_fn(x, s [B], ab [B])` is the model's noise prediction at the
    (fractional) timestep s. Returns field(x, s)."""
    log_ab = np.log(np.asarray(alphas_cumprod, np.float64))
    slopes = np.gradient(log_ab)  # central differences; one-sided at the ends
    log_ab, slopes = jnp.asarray(log_ab, jnp.float32), jnp.asarray(slopes, jnp.float32)
    last = len(log_ab) - 1

    def log_ab_and_slope(s):
        k = jnp.clip(jnp.floor(s).astype(jnp.int32), 0, last - 1)
        u = s - k
        l0, l1, d0, d1 = log_ab[k], log_ab[k + 1], slopes[k], slopes[k + 1]
        value = ((2 * u ** 3 - 3 * u ** 2 + 1) * l0 + (u ** 3 - 2 * u ** 2 + u) * d0
                 + (3 * u ** 2 - 2 * u ** 3) * l1 + (u ** 3 - u ** 2) * d1)
        slope = ((6 * u ** 2 - 6 * u) * (l0 - l1) + (3 * u ** 2 - 4 * u + 1) * d0
                 + (3 * u ** 2 - 2 * u) * d1)
        return value, slope

    def field(x, s):
        s = jnp.asarray(s, jnp.float32)
        log_a, slope = log_ab_and_slope(s)
        ab = jnp.exp(log_a)
        eps = eps_fn(x, jnp.broadcast_to(s, x.shape[:1]), jnp.broadcast_to(ab, x.shape[:1]))
        return 0.5 * slope * (x - eps / jnp.sqrt(1.0 - ab))

    return field


def in_log_sigma(field: Callable, alphas_cumprod) -> tuple[Callable, float, float]:
    """`field(x, s)` over timesteps as (field(x, tau), tau at s = 0, tau at s = T - 1) in
    tau = log sigma, sigma = sqrt((1 - ab) / ab), the time EDM and DPM-Solver step in: s(tau)
    interpolates the integers linearly in log sigma and field(x, tau) = field(x, s(tau)) ds/dtau.
    The flow and its divergence integral are the same; a fixed-step solver's error is not: near
    s = 0, sigma grows sevenfold over the first 40 timesteps of the linear schedule, and RK4 with
    25 steps evenly in s gave -1.26 bits/dim on `ddpm_mnist` where 100 steps gave +1.55
    (docs/results/ddpm.md)."""
    ab = np.asarray(alphas_cumprod, np.float64)
    log_sigma = 0.5 * (np.log1p(-ab) - np.log(ab))
    if np.any(np.diff(log_sigma) <= 0) or not np.all(np.isfinite(log_sigma)):
        raise ValueError('the probability flow in log sigma needs 0 < ab < 1, decreasing.')
    knots = jnp.asarray(log_sigma, jnp.float32)
    last = len(log_sigma) - 1

    def warped(x, tau):
        k = jnp.clip(jnp.searchsorted(knots, tau, side='right') - 1, 0, last - 1)
        width = knots[k + 1] - knots[k]
        s = k + (tau - knots[k]) / width
        return field(x, s) / width

    return warped, float(log_sigma[0]), float(log_sigma[-1])


# ------------------------------------------------------------------------------------------------
# The variational bound

def normal_kl(mean1, var1, mean2, var2) -> jax.Array:
    """KL(N(mean1, var1) || N(mean2, var2)), elementwise."""
    return 0.5 * (jnp.log(var2) - jnp.log(var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def _log_ndtr_diff(hi: jax.Array, lo: jax.Array) -> jax.Array:
    """log(Phi(hi) - Phi(lo)) for hi > lo, computed in whichever tail keeps precision."""
    flip = (hi + lo) > 0  # both mostly in the upper tail: Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi)
    a = jnp.where(flip, -lo, hi)
    b = jnp.where(flip, -hi, lo)
    la, lb = log_ndtr(a), log_ndtr(b)
    return la + jnp.log1p(-jnp.exp(jnp.minimum(lb - la, -1e-12)))


def discretized_gaussian_log_likelihood(x: jax.Array, mean: jax.Array, var: jax.Array,
                                        half_bin: float, low: float, high: float) -> jax.Array:
    """log P(x) of data on levels spaced 2 * half_bin apart in [low, high] under N(mean, var)
    integrated over the level's bin; the bins at low and high extend to -inf and +inf (Ho Eq. 13).
    Elementwise; x exactly on the levels."""
    inv = jax.lax.rsqrt(var)
    upper = (x + half_bin - mean) * inv
    lower = (x - half_bin - mean) * inv
    bottom = x <= low + half_bin / 2
    top = x >= high - half_bin / 2
    mid = _log_ndtr_diff(upper, lower)
    return jnp.where(bottom, log_ndtr(upper), jnp.where(top, log_ndtr(-lower), mid))


def gaussian_log_density(x, mean, var) -> jax.Array:
    return -0.5 * (LOG_2PI + jnp.log(var) + (x - mean) ** 2 / var)


def decoder_variance(chain: Steps, variance: str) -> float:
    """The decoder's variance at t = 0: beta_0 for 'fixed_large' (Ho et al.'s code), and for
    'fixed_small', whose posterior variance is 0 there, the one at t = 1 (Ho et al. and Nichol &
    Dhariwal clip it so). The chain is the full one (`steps(sched, arange(T))`)."""
    return float(chain.var_large[0] if variance == 'fixed_large' else chain.var_small[1])


def prior_kl(x0: jax.Array, ab_last: float) -> jax.Array:
    """KL(q(x_{T-1} | x_0) || N(0, I)) summed over dimensions [B]."""
    axes = tuple(range(1, x0.ndim))
    return jnp.sum(normal_kl(math.sqrt(ab_last) * x0, 1.0 - ab_last, 0.0, 1.0), axes)


def vlb_term(x0: jax.Array, x_t: jax.Array, x0_hat: jax.Array, step: Steps, decoder_var: float,
             *, variance: str, decoder: Callable) -> jax.Array:
    """The bound's term at step t (t - 1 -> t; [B] nats summed over dims): the KL between q's
    posterior and the model's step for t >= 1; -log p(x_0 | x_t) for t = 0, by
    decoder(x0, mean, var) -> elementwise log-likelihood. `step` holds scalars or [B] arrays."""
    nd = x0.ndim
    col = lambda a: _col(a, nd)  # noqa: E731
    q_mean = col(step.c0) * x0 + col(step.ct) * x_t
    p_mean = col(step.c0) * x0_hat + col(step.ct) * x_t
    p_var = col(step.var_small if variance == 'fixed_small' else step.var_large)
    q_var = col(step.var_small)
    axes = tuple(range(1, nd))
    first = col(step.ab_s) >= 1.0
    safe_q = jnp.where(first, 1.0, q_var)
    safe_p = jnp.where(first, 1.0, p_var)
    kl = jnp.sum(normal_kl(q_mean, safe_q, p_mean, safe_p), axes)
    nll = -jnp.sum(decoder(x0, x0_hat, jnp.full_like(x0_hat, decoder_var)), axes)
    return jnp.where(first[(...,) + (0,) * (nd - 1)], nll, kl)


def variational_bound(sched: Schedule, predict_x0: Callable, x0: jax.Array, index: jax.Array,
                      rng: jax.Array, *, decoder: Callable, variance: str, num_terms: int = 0
                      ) -> jax.Array:
    """The bound on -log p(x_0) per example [B], nats: the prior term plus all T terms
    (num_terms 0 or T; each term draws its own x_t ~ q(x_t | x_0)), or an unbiased stratified
    estimate from num_terms = K of them (one uniform t in each of K near-equal strata, weighted by
    the stratum's size). predict_x0(x_t, t [B]) -> x0_hat is the model; decoder(x0, mean, var)
    -> elementwise log p(x_0 | x_t=0). Noise is keyed per example by `index`, one lax.scan over
    the terms."""
    big_t = sched.num_timesteps
    chain = steps(sched, np.arange(big_t))
    table = jax.tree.map(jnp.asarray, chain)
    ab = jnp.asarray(sched.alphas_cumprod, jnp.float32)
    exact = num_terms in (0, big_t)
    bounds = np.arange(big_t + 1) if exact else np.round(
        np.linspace(0, big_t, num_terms + 1)).astype(np.int64)
    weights = jnp.asarray(np.diff(bounds), jnp.float32)
    lows, sizes = jnp.asarray(bounds[:-1]), jnp.asarray(np.diff(bounds))

    def body(total, i):
        k_t, k_eps = jax.random.split(jax.random.fold_in(rng, i))
        t = jnp.full(x0.shape[:1], lows[i], jnp.int32)
        if not exact:  # uniform in the stratum [lo, lo + size)
            offset = jnp.floor(noise.uniform(k_t, index, ()) * sizes[i]).astype(jnp.int32)
            t = t + jnp.minimum(offset, sizes[i] - 1)
        x_t = q_sample(x0, ab[t], noise.normal(k_eps, index, x0.shape[1:]))
        step = jax.tree.map(lambda a: a[t], table)
        term = vlb_term(x0, x_t, predict_x0(x_t, t), step, decoder_variance(chain, variance),
                        variance=variance, decoder=decoder)
        return total + weights[i] * term, None

    total, _ = jax.lax.scan(body, jnp.zeros(x0.shape[:1]), jnp.arange(len(bounds) - 1))
    return total + prior_kl(x0, float(sched.alphas_cumprod[-1]))
