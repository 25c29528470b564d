"""ODE integration and the instantaneous change of variables, for every family that samples or
scores through an ODE (flow matching's velocity field, a diffusion model's probability-flow ODE).

A vector field is `field(x, t) -> dx/dt`, x [B, ...] and t a scalar (the same time for the batch).
`integrate` runs a fixed-step explicit Runge-Kutta method from t0 to t1 (either direction) in one
`lax.scan` and returns the number of field evaluations (NFE) beside the result:

    euler     x += h f(x, t)                                               1 evaluation a step
    midpoint  x += h f(x + h/2 f(x, t), t + h/2)                           2
    heun      k1 = f(x, t), k2 = f(x + h k1, t + h), x += h (k1 + k2) / 2  2 (the trapezoid rule)
    rk4       the classical fourth-order method                            4

Sampler names are `<method><steps>`, e.g. `euler10`, `heun20` (`parse`).

The log-density of x under the pushforward of a base density p_T along the flow (Chen et al. 2018,
instantaneous change of variables; FFJORD, Grathwohl et al. 2019):

    d log p(x_t) / dt = -div f(x_t, t),   so   log p_0(x_0) = log p_T(x_T) + int_0^T div f dt

`log_likelihood` integrates x and the divergence together from the data's time to the base's.
The divergence is exact (`exact_divergence`: the Jacobian's trace by forward mode, D
Jacobian-vector products; for low dimensions) or Hutchinson's unbiased estimate e^T J e with
Rademacher e (`hutchinson_divergence`: one product; for images), whose standard error over the
batch the caller reports.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Field = Callable[[jax.Array, jax.Array], jax.Array]

# Field evaluations per step of each method.
METHODS = {'euler': 1, 'midpoint': 2, 'heun': 2, 'rk4': 4}


def parse(name: str) -> tuple[str, int]:
    """'heun20' -> ('heun', 20), 'rk410' -> ('rk4', 10); a one-line error naming the choices
    otherwise."""
    for method in METHODS:
        steps = name[len(method):]
        if name.startswith(method) and steps.isdigit() and int(steps) >= 1:
            return method, int(steps)
    raise ValueError(f'unknown ODE sampler {name!r}: use <method><steps> with a method of '
                     f'{", ".join(METHODS)} and steps >= 1, e.g. euler10 or heun20.')


def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


def _scale(c, a):
    return jax.tree.map(lambda v: c * v, a)


def integrate(field: Field, x, t0: float, t1: float, num_steps: int, method: str
              ) -> tuple[jax.Array, int]:
    """(x at t1, NFE) from x at t0, in `num_steps` equal steps of `method`. `x` may be any pytree
    the field maps to one of the same structure (an augmented state, e.g. (x, log-density))."""
    if method not in METHODS:
        raise ValueError(f'unknown ODE method {method!r}; use one of {", ".join(METHODS)}.')
    h = (t1 - t0) / num_steps

    def step(carry, i):
        t = t0 + i * h
        if method == 'euler':
            return _add(carry, _scale(h, field(carry, t))), None
        if method == 'midpoint':
            mid = _add(carry, _scale(0.5 * h, field(carry, t)))
            return _add(carry, _scale(h, field(mid, t + 0.5 * h))), None
        if method == 'heun':
            k1 = field(carry, t)
            k2 = field(_add(carry, _scale(h, k1)), t + h)
            return _add(carry, _scale(0.5 * h, _add(k1, k2))), None
        k1 = field(carry, t)
        k2 = field(_add(carry, _scale(0.5 * h, k1)), t + 0.5 * h)
        k3 = field(_add(carry, _scale(0.5 * h, k2)), t + 0.5 * h)
        k4 = field(_add(carry, _scale(h, k3)), t + h)
        total = _add(_add(k1, _scale(2.0, k2)), _add(_scale(2.0, k3), k4))
        return _add(carry, _scale(h / 6.0, total)), None

    out, _ = jax.lax.scan(step, x, jnp.arange(num_steps, dtype=jnp.float32))
    return out, METHODS[method] * num_steps


def exact_divergence(field: Field, x: jax.Array, t) -> tuple[jax.Array, jax.Array]:
    """(f(x, t), div f(x, t) [B]): the trace of each example's Jacobian by forward mode, one
    Jacobian-vector product per dimension. The field must treat examples independently."""
    b, shape = x.shape[0], x.shape[1:]
    d = int(jnp.size(x) // b)
    flat = lambda v: field(v.reshape(x.shape), t).reshape(b, d)  # noqa: E731
    out, jvp = jax.linearize(flat, x.reshape(b, d))
    basis = jnp.eye(d, dtype=x.dtype)

    def diagonal(e):  # e [D]: the e-th column of every example's Jacobian, dotted with e
        return jnp.sum(jvp(jnp.broadcast_to(e, (b, d))) * e, -1)

    div = jnp.sum(jax.lax.map(diagonal, basis), 0)
    return out.reshape((b,) + shape), div


def hutchinson_divergence(field: Field, x: jax.Array, t, noise: jax.Array
                          ) -> tuple[jax.Array, jax.Array]:
    """(f(x, t), e^T J e [B]) for Rademacher (or standard normal) `noise` e shaped like x: an
    unbiased estimate of each example's divergence from one Jacobian-vector product."""
    out, jvp = jax.jvp(lambda v: field(v, t), (x,), (noise,))
    return out, jnp.sum((jvp * noise).reshape(x.shape[0], -1), -1)


def log_likelihood(field: Field, x: jax.Array, t_data: float, t_base: float,
                   base_log_prob: Callable[[jax.Array], jax.Array], num_steps: int, method: str,
                   noise: jax.Array | None = None) -> tuple[jax.Array, jax.Array, int]:
    """(log p(x) [B] in nats, x carried to the base time, NFE): x is integrated from t_data to
    t_base with its log-density change. With `noise` (shaped like x, held fixed along the path)
    the divergence is Hutchinson's estimate, else exact."""

    def augmented(state, t):
        y, _ = state
        if noise is None:
            dy, div = exact_divergence(field, y, t)
        else:
            dy, div = hutchinson_divergence(field, y, t, noise)
        return dy, div

    # d/dt [x, l] = [f, div f]: l(t_base) - l(t_data) = int div f dt, and
    # log p(x) = log p_base(x_base) + int_{t_data}^{t_base} div f dt.
    (base, delta), nfe = integrate(augmented, (x, jnp.zeros(x.shape[0], x.dtype)), t_data,
                                   t_base, num_steps, method)
    return base_log_prob(base) + delta, base, nfe
