"""The reverse chains of Gaussian diffusion (genmodels/nn/diffusion.py has the forward process, the
prediction targets and the bound): one step t -> s of each sampler, the chain over S kept timesteps
as one lax.scan, and sampler specs.

    ancestral  x_s = c0 x0_hat + ct x_t + sigma z,  sigma^2 = var_small ('fixed_small') or
               b ('fixed_large'; Ho Sec. 3.2)
    DDIM       x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps_hat + sigma z,
               sigma^2 = eta^2 var_small                                   (Song et al. Eq. 12, 16)
    DPM-Solver++(2M)  multistep in the data prediction, in log-SNR time (Lu et al. 2022); with
               eta > 0 its stochastic form, SDE-DPM-Solver++(2M) at eta = 1
    Heun       EDM's second-order deterministic sampler (Karras et al. 2022, Alg. 1)

A sampler's name is its kind and number of steps, then optionally its eta and its timesteps'
spacing, e.g. 'ddim50', 'ddim50_eta1' or 'dpmpp2m10_eta1_karras' (`parse_sampler`);
`sampler_spec` reads a config's sampler section into one `SamplerSpec`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from genmodels.nn.diffusion import SPACINGS, Steps


# ------------------------------------------------------------------------------------------------
# Reverse chains. `denoise(x_t, t [B]) -> (eps_hat, x0_hat)` is the model (with any guidance and
# clipping already applied); the chain is one lax.scan over the kept timesteps, last to first.

def ancestral_step(x_t: jax.Array, eps: jax.Array, x0: jax.Array, step: Steps, *, variance: str,
                   eta: float) -> tuple[jax.Array, jax.Array]:
    """(mean, variance) of x_s: the posterior q(x_s | x_t, x0_hat) (Ho Eqs. 6-7, respaced)."""
    var = step.var_small if variance == 'fixed_small' else step.var_large
    return step.c0 * x0 + step.ct * x_t, var


def ddim_step(x_t: jax.Array, eps: jax.Array, x0: jax.Array, step: Steps, *, variance: str,
              eta: float) -> tuple[jax.Array, jax.Array]:
    """(mean, variance) of x_s: DDIM with noise eta (Song et al. Eq. 12, 16)."""
    var = eta ** 2 * step.var_small
    return jnp.sqrt(step.ab_s) * x0 + jnp.sqrt(jnp.maximum(1.0 - step.ab_s - var, 0.0)) * eps, var


def dpmpp2m_step(x_t: jax.Array, x0: jax.Array, x0_prev: jax.Array, h_prev: jax.Array,
                 step: Steps, z: jax.Array, eta: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """(x_s, h) of DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), the multistep second-order solver of
    the probability-flow ODE in the data prediction, with lambda = log(alpha / sigma), and with
    eta > 0 its stochastic form (eta = 1: SDE-DPM-Solver++(2M), Lu et al. 2022, Sec. 5 and App. B):

        h = lambda_s - lambda_t,  D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_prev,  r = h_prev / h
        x_s = sigma_s / sigma_t exp(-eta h) x_t + alpha_s (1 - exp(-(1 + eta) h)) D
              + sigma_s sqrt(1 - exp(-2 eta h)) z

    At eta = 0 this is the ODE solver; for any eta, a point mass x0_hat = x_0 gives x_s the
    forward marginal N(alpha_s x_0, sigma_s^2). First order (D = x0_hat) at the first step
    (h_prev = 0) and at the last, into the data (s = -1), where it returns x0_hat (the "lower
    order final" of the reference code)."""
    last = step.ab_s >= 1.0
    ab_t, ab_s = step.ab_t, jnp.where(last, 0.5, step.ab_s)  # 0.5: any finite stand-in

    def lam(ab):
        return 0.5 * (jnp.log(ab) - jnp.log1p(-ab))

    h = lam(ab_s) - lam(ab_t)
    half_inv_r = 0.5 * h / jnp.where(h_prev > 0, h_prev, 1.0)
    second = (h_prev > 0) & ~last
    d = jnp.where(second, (1.0 + half_inv_r) * x0 - half_inv_r * x0_prev, x0)
    x_s = (jnp.sqrt((1.0 - ab_s) / (1.0 - ab_t)) * jnp.exp(-eta * h) * x_t
           - jnp.sqrt(ab_s) * jnp.expm1(-(1.0 + eta) * h) * d)
    if eta:
        x_s = x_s + jnp.sqrt((1.0 - ab_s) * -jnp.expm1(-2.0 * eta * h)) * z
    return jnp.where(last, x0, x_s), jnp.where(last, 0.0, h)


def heun_step(x_t: jax.Array, eps: jax.Array, step: Steps, denoise_s: Callable) -> jax.Array:
    """x_s by one step of EDM's deterministic Heun sampler (Karras et al. 2022, Alg. 1) on the
    probability-flow ODE in its variables, x~ = x / sqrt(ab) and sigma = sqrt((1 - ab) / ab), where
    dx~/dsigma = eps_hat(x): an Euler step (which is DDIM's), then the trapezoid correction with
    eps_hat at the new point, `denoise_s(x_s) -> eps_hat`, except on the last step into the data
    (sigma_s = 0: the Euler step, x0_hat)."""
    last = step.ab_s >= 1.0
    sigma_t = jnp.sqrt((1.0 - step.ab_t) / step.ab_t)
    sigma_s = jnp.where(last, 0.0, jnp.sqrt((1.0 - step.ab_s) / step.ab_s))
    x_tilde = x_t / jnp.sqrt(step.ab_t)
    euler = x_tilde + (sigma_s - sigma_t) * eps

    def corrected(_):
        eps_s = denoise_s(jnp.sqrt(step.ab_s) * euler)
        return x_tilde + (sigma_s - sigma_t) * 0.5 * (eps + eps_s)

    return jnp.sqrt(jnp.where(last, 1.0, step.ab_s)) * jax.lax.cond(last, lambda _: euler,
                                                                      corrected, None)


class Sampler(NamedTuple):
    step: Callable | None  # (x_t, eps_hat, x0_hat, step, *, variance, eta) -> (mean, var) of x_s;
                           # None: a multistep solver that run_chain steps itself
    takes_eta: bool        # whether its name may set eta: '<name><S>_eta<E>'


SAMPLERS = {  # name -> Sampler; a name here is a sampler.name and, with its steps, a sampler's name
    'ancestral': Sampler(ancestral_step, takes_eta=False),
    'ddim': Sampler(ddim_step, takes_eta=True),
    'dpmpp2m': Sampler(None, takes_eta=True),   # DPM-Solver++(2M): dpmpp2m_step
    'heun': Sampler(None, takes_eta=False),     # EDM's Heun (Karras et al. 2022, Alg. 1): heun_step
}


def reverse_step(kind: str, x_t: jax.Array, eps: jax.Array, x0: jax.Array, step: Steps,
                 z: jax.Array, *, variance: str = 'fixed_small', eta: float = 0.0) -> jax.Array:
    """One step t -> s of a chain; `step` holds one step's scalars; z ~ N(0, I) like x_t."""
    if kind not in SAMPLERS or SAMPLERS[kind].step is None:
        raise ValueError(f'unknown one-step sampler {kind!r}; use one of '
                         f'{tuple(k for k, v in SAMPLERS.items() if v.step is not None)}.')
    mean, var = SAMPLERS[kind].step(x_t, eps, x0, step, variance=variance, eta=eta)
    last = step.ab_s >= 1.0  # s = -1: return x0_hat, no noise
    return mean + jnp.where(last, 0.0, jnp.sqrt(var)) * z


def run_chain(kind: str, denoise: Callable, x_T: jax.Array, chain: Steps, rng: jax.Array, *,
              variance: str = 'fixed_small', eta: float = 0.0, keep: int = 0
              ) -> tuple[jax.Array, jax.Array | None]:
    """x_0 from x_T by the reverse chain over `chain` (from `steps`); with keep > 0 also the
    intermediate x_t at `keep` evenly spaced steps [keep, B, ...] (x_T first), for figures."""
    num = len(chain.t)
    idx = np.arange(num)[::-1]
    xs = jax.tree.map(lambda a: jnp.asarray(a)[idx], chain)
    kept = np.zeros(num, bool)
    if keep:
        kept[np.round(np.linspace(0, num - 1, keep)).astype(int)] = True

    s_of = np.concatenate([[0], chain.t[:-1]])[idx]  # each step's next timestep (0 at the last)

    def body(carry, inputs):
        x, x0_prev, h_prev = carry  # the last x0_hat and step in lambda: multistep solvers' state
        i, step, s, save = inputs
        t = jnp.full(x.shape[:1], step.t, jnp.int32)
        eps, x0 = denoise(x, t)
        z = jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype)
        if kind == 'dpmpp2m':
            new, h = dpmpp2m_step(x, x0, x0_prev, h_prev, step, z, eta)
        elif kind == 'heun':
            new, h = heun_step(x, eps, step, lambda x_s: denoise(
                x_s, jnp.full(x.shape[:1], s, jnp.int32))[0]), h_prev
        else:
            new, h = reverse_step(kind, x, eps, x0, step, z, variance=variance, eta=eta), h_prev
        return (new, x0, h), (jnp.where(save, x, 0.0) if keep else None)

    start = (x_T, jnp.zeros_like(x_T), jnp.zeros((), jnp.float32))
    (x0, _, _), trace = jax.lax.scan(
        body, start, (jnp.arange(num), xs, jnp.asarray(s_of, jnp.int32), jnp.asarray(kept[::-1])))
    if keep:
        trace = trace[jnp.asarray(np.flatnonzero(kept[::-1]))]
    return x0, trace


# ------------------------------------------------------------------------------------------------
# Sampler specs: a config's sampler section, or a sampler's name like 'ddim50_eta1', -> SamplerSpec

@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """Everything that decides how samples are drawn (the config's sampler section)."""
    kind: str                       # a SAMPLERS name
    num_steps: int                  # S kept timesteps
    eta: float = 0.0                # DDIM's and DPM-Solver++'s noise (0: deterministic, the
                                    # ODE; 1: ancestral's, the reverse SDE's)
    variance: str = 'fixed_small'   # ancestral's: 'fixed_small' or 'fixed_large'
    guidance_scale: float = 1.0     # classifier-free guidance s (conditional models)
    clip_denoised: bool = False     # clip x0_hat to the data range at every step (images)
    spacing: str = ''               # the kept timesteps' spread (diffusion.SPACINGS; '': the
                                    # kind's own, diffusion.DEFAULT_SPACING)


class SamplerName(NamedTuple):
    kind: str
    num_steps: int
    eta: float | None  # None: the name sets no eta
    spacing: str | None = None  # None: the name sets no spacing


def _name_pattern() -> re.Pattern:
    kinds = '|'.join(map(re.escape, sorted(SAMPLERS, key=len, reverse=True)))  # longest first
    spacings = '|'.join(SPACINGS)
    return re.compile(rf'^({kinds})(\d+)(?:_eta(\d+(?:\.\d+)?))?(?:_({spacings}))?$')


def sampler_names() -> str:
    """The grammar of sampler names, for messages: 'ancestral<S>, ddim<S> or ddim<S>_eta<E>,
    each optionally ending in _uniform, ...'."""
    forms = [f'{k}<S>' for k in SAMPLERS] + [f'{k}<S>_eta<E>' for k, v in SAMPLERS.items()
                                             if v.takes_eta]
    endings = ', '.join(f'_{s}' for s in SPACINGS[:-1]) + f' or _{SPACINGS[-1]}'
    return f"{', '.join(forms[:-1])} or {forms[-1]}, each optionally ending in {endings}"


def parse_sampler(name: str) -> SamplerName:
    """'ddim50' -> ('ddim', 50, None, None); 'ddim50_eta1' -> ('ddim', 50, 1.0, None);
    'dpmpp2m10_karras' -> ('dpmpp2m', 10, None, 'karras'). ValueError if `name` is not a
    SAMPLERS name, then the number of steps, then (if it takes one) _eta<E>, then optionally a
    spacing."""
    parsed = _name_pattern().match(str(name))
    if not parsed or (parsed.group(3) and not SAMPLERS[parsed.group(1)].takes_eta):
        raise ValueError(f'sampler name {name!r} must be {sampler_names()}, e.g. ddim50.')
    kind, steps, eta, spacing = parsed.groups()
    return SamplerName(kind, int(steps), None if eta is None else float(eta), spacing)


def sampler_spec(section, name: str | None = None) -> SamplerSpec:
    """The SamplerSpec of a config's sampler section (its keys name, num_steps, eta, variance,
    guidance_scale, clip_denoised, spacing); with `name` (e.g. an eval.samplers entry
    'ddim50_eta1'), the name's kind and steps, and its eta and spacing where it has them, replace
    the section's."""
    spec = SamplerSpec(section.name, section.num_steps, section.eta, section.variance,
                       section.guidance_scale, section.clip_denoised, section.spacing)
    if name is None:
        return spec
    kind, steps, eta, spacing = parse_sampler(name)
    return dataclasses.replace(spec, kind=kind, num_steps=steps,
                               eta=spec.eta if eta is None else eta,
                               spacing=spec.spacing if spacing is None else spacing)
