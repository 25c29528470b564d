"""ODE integration and the instantaneous change of variables, for every family that samples or
scores through an ODE (flow matching's velocity field, a diffusion model's probability-flow ODE).

A vector field is `field(x, t) -> dx/dt`, x [B, ...] and t a scalar (the same time for the batch).
`integrate` runs a fixed-step explicit Runge-Kutta method from t0 to t1 (either direction) in one
`lax.scan` and returns the number of field evaluations (NFE) beside the result:

    euler     x += h f(x, t)                                               1 evaluation a step
    midpoint  x += h f(x + h/2 f(x, t), t + h/2)                           2
    heun      k1 = f(x, t), k2 = f(x + h k1, t + h), x += h (k1 + k2) / 2  2 (the trapezoid rule)
    rk4       the classical fourth-order method                            4

Sampler names are `<method><steps>`, e.g. `euler10`, `heun20` (`parse`). `dopri5` is adaptive:
Dormand & Prince's 5(4) pair (Hairer, Norsett & Wanner, Solving ODEs I, Table II.5.2) with the
first-same-as-last evaluation, one step size for the whole batch, accepted when the RMS of the
error over atol + rtol |x| is at most 1; it too reports its NFE.

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


def integrate(field: Field, x, t0: float, t1: float, num_steps: int, method: str,
              trajectory: bool = False, times=None):
    """(x at t1, NFE) from x at t0, in `num_steps` equal steps of `method`, or over the grid
    `times` [num_steps + 1] from t0 to t1 when given (steps of any lengths). `x` may be any pytree
    the field maps to one of the same structure (an augmented state, e.g. (x, log-density)).
    With `trajectory`, (x at t1, NFE, the states after each step [num_steps, ...])."""
    if method not in METHODS:
        raise ValueError(f'unknown ODE method {method!r}; use one of {", ".join(METHODS)}.')

    def advance(carry, t, h):
        if method == 'euler':
            return _add(carry, _scale(h, field(carry, t)))
        if method == 'midpoint':
            mid = _add(carry, _scale(0.5 * h, field(carry, t)))
            return _add(carry, _scale(h, field(mid, t + 0.5 * h)))
        if method == 'heun':
            k1 = field(carry, t)
            k2 = field(_add(carry, _scale(h, k1)), t + h)
            return _add(carry, _scale(0.5 * h, _add(k1, k2)))
        k1 = field(carry, t)
        k2 = field(_add(carry, _scale(0.5 * h, k1)), t + 0.5 * h)
        k3 = field(_add(carry, _scale(0.5 * h, k2)), t + 0.5 * h)
        k4 = field(_add(carry, _scale(h, k3)), t + h)
        total = _add(_add(k1, _scale(2.0, k2)), _add(_scale(2.0, k3), k4))
        return _add(carry, _scale(h / 6.0, total))

    if times is None:
        h = (t1 - t0) / num_steps
        steps = jnp.arange(num_steps, dtype=jnp.float32)
        step_of = lambda carry, i: advance(carry, t0 + i * h, h)  # noqa: E731
    else:
        times = jnp.asarray(times, jnp.float32)
        if times.shape != (num_steps + 1,):
            raise ValueError(f'times has shape {times.shape}; expected ({num_steps + 1},).')
        steps = (times[:-1], times[1:] - times[:-1])
        step_of = lambda carry, th: advance(carry, *th)  # noqa: E731

    def step(carry, xs):
        new = step_of(carry, xs)
        return new, (new if trajectory else None)

    out, states = jax.lax.scan(step, x, steps)
    nfe = METHODS[method] * num_steps
    return (out, nfe, states) if trajectory else (out, nfe)


# Dormand-Prince 5(4): nodes, stages, the 5th-order weights (which are also the last stage's, so
# its evaluation at the new point is the next step's first) and the 4th-order weights.
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = ((),
         (1 / 5,),
         (3 / 40, 9 / 40),
         (44 / 45, -56 / 15, 32 / 9),
         (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
         (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
         (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_DP_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def _combine(x, h, weights, ks):
    total = x
    for w, k in zip(weights, ks):
        if w:
            total = _add(total, _scale(h * w, k))
    return total


def dopri5(field: Field, x, t0: float, t1: float, rtol: float = 1e-5, atol: float = 1e-5,
           max_steps: int = 10_000) -> tuple[jax.Array, jax.Array]:
    """(x at t1, NFE) by adaptive Dormand-Prince 5(4) steps from x at t0 (either direction);
    `x` may be a pytree. Not differentiable (a `lax.while_loop`): for sampling and evaluation.
    NFE is a traced int32, as it depends on the data."""
    span = t1 - t0
    direction = 1.0 if span >= 0 else -1.0
    tdtype = jnp.result_type(float)  # float32, or float64 under jax_enable_x64
    leaves = lambda tree: jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(tree)])  # noqa: E731

    def error_norm(x_old, x_new, err):
        scale = atol + rtol * jnp.maximum(jnp.abs(leaves(x_old)), jnp.abs(leaves(x_new)))
        return jnp.sqrt(jnp.mean((leaves(err) / scale) ** 2))

    def attempt(state):
        y, t, h, k1, nfe, steps = state
        h = direction * jnp.minimum(jnp.abs(h), jnp.abs(t1 - t))  # never past t1
        ks = [k1]
        for i in range(1, 7):
            ks.append(field(_combine(y, h, _DP_A[i], ks), t + _DP_C[i] * h))
        y_new = _combine(y, h, _DP_B5, ks)  # ks[6] = f(y_new, t + h): first-same-as-last
        err = _combine(jax.tree.map(jnp.zeros_like, y), h,
                       [b5 - b4 for b5, b4 in zip(_DP_B5, _DP_B4)], ks)
        norm = error_norm(y, y_new, err)
        accept = norm <= 1.0
        factor = jnp.clip(0.9 * jnp.where(norm > 0, norm, 1e-10) ** -0.2, 0.2, 10.0)
        pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(accept, a, b), new, old)  # noqa: E731
        return (pick(y_new, y), jnp.where(accept, t + h, t).astype(tdtype),
                (h * factor).astype(tdtype), pick(ks[6], k1), nfe + 6, steps + 1)

    def running(state):
        _, t, _, _, _, steps = state
        return (direction * (t1 - t) > 1e-9 * jnp.abs(span)) & (steps < max_steps)

    k1 = field(x, jnp.asarray(t0, tdtype))
    h0 = jnp.asarray(0.01 * span, tdtype)
    state = (x, jnp.asarray(t0, tdtype), h0, k1, jnp.asarray(1, jnp.int32),
             jnp.asarray(0, jnp.int32))
    y, _, _, _, nfe, _ = jax.lax.while_loop(running, attempt, state)
    return y, nfe


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
                   noise: jax.Array | None = None, times=None
                   ) -> tuple[jax.Array, jax.Array, int]:
    """(log p(x) [B] in nats, x carried to the base time, NFE): x is integrated from t_data to
    t_base (over the grid `times` when given, as `integrate`) with its log-density change. With
    `noise` (shaped like x, held fixed along the path) the divergence is Hutchinson's estimate,
    else exact."""

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
                                   t_base, num_steps, method, times=times)
    return base_log_prob(base) + delta, base, nfe
