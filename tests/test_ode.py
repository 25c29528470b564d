"""genmodels/nn/ode.py against closed forms: a linear ODE's solution, each method's order, the
divergence of a linear field, and the likelihood of a Gaussian pushed through a linear flow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg, stats

from genmodels.nn import ode

A = np.array([[-0.5, 1.0], [-1.0, -0.3]], np.float32)  # a damped rotation


def linear(x, t):
    return x @ A.T


def test_a_linear_ode_converges_at_each_methods_order():
    x0 = jnp.array([[1.0, 0.5], [-0.3, 2.0]])
    want = np.asarray(x0) @ linalg.expm(A).T  # x(1) = expm(A) x(0)
    for method, order in (('euler', 1), ('midpoint', 2), ('heun', 2), ('rk4', 4)):
        errors = []
        for steps in (8, 16):
            with jax.enable_x64():
                got, nfe = ode.integrate(linear, x0.astype(jnp.float64), 0.0, 1.0, steps, method)
            errors.append(np.abs(np.asarray(got) - want).max())
            assert nfe == ode.METHODS[method] * steps
        # Halving the step divides the error by about 2^order.
        assert 0.7 * order < np.log2(errors[0] / errors[1]) < 1.3 * order, (method, errors)


def test_integrating_backwards_undoes_forwards():
    x0 = jnp.array([[1.0, -1.0]])
    x1, _ = ode.integrate(linear, x0, 0.0, 1.0, 50, 'rk4')
    back, _ = ode.integrate(linear, x1, 1.0, 0.0, 50, 'rk4')
    np.testing.assert_allclose(back, x0, atol=1e-5)


def test_divergence_exact_and_hutchinson():
    x = jax.random.normal(jax.random.key(0), (3, 2, 1))
    field = lambda v, t: (v[..., 0] @ A.T)[..., None] * (1.0 + t)  # noqa: E731
    out, div = ode.exact_divergence(field, x, 0.5)
    np.testing.assert_allclose(div, 1.5 * np.trace(A) * np.ones(3), rtol=1e-6)
    np.testing.assert_allclose(out, field(x, 0.5))
    # Hutchinson with Rademacher noise is unbiased: its mean over many draws is the trace.
    noise = jax.random.rademacher(jax.random.key(1), (4000, 3, 2, 1), jnp.float32)
    estimates = jax.vmap(lambda e: ode.hutchinson_divergence(field, x, 0.5, e)[1])(noise)
    np.testing.assert_allclose(estimates.mean(0), 1.5 * np.trace(A), atol=0.08)


@pytest.mark.parametrize('exact', [True, False])
def test_likelihood_of_a_gaussian_through_a_linear_flow(exact):
    """x = expm(A) z, z ~ N(0, I): log p(x) = log N(x; 0, expm(A) expm(A)^T) exactly."""
    x = jnp.array([[0.3, -0.2], [1.5, 0.7], [-1.0, 0.1]])
    noise = None if exact else jax.random.rademacher(jax.random.key(2), x.shape, jnp.float32)
    base = lambda z: jnp.sum(jax.scipy.stats.norm.logpdf(z), -1)  # noqa: E731
    # The flow carries the base (t = 0) to the data (t = 1); the likelihood integrates back.
    log_p, z, nfe = ode.log_likelihood(linear, x, 1.0, 0.0, base, 40, 'rk4', noise=noise)
    m = linalg.expm(A)
    want = stats.multivariate_normal(np.zeros(2), m @ m.T).logpdf(np.asarray(x))
    # A linear field's Jacobian is A everywhere, so Hutchinson's estimate e^T A e equals the
    # trace only in expectation; for a 2x2 A with Rademacher e it is trace(A) + e1 e2 (A12 + A21)
    # = trace(A) here, since A12 + A21 = 0: exact in both cases.
    np.testing.assert_allclose(log_p, want, atol=1e-4)
    np.testing.assert_allclose(np.asarray(z), np.asarray(x) @ np.linalg.inv(m).T, atol=1e-4)
    assert nfe == 160


def test_sampler_names():
    assert ode.parse('heun20') == ('heun', 20) and ode.parse('rk41') == ('rk4', 1)
    for bad in ('heun', 'dopri', 'euler0', 'leapfrog10'):
        with pytest.raises(ValueError, match='unknown ODE sampler'):
            ode.parse(bad)


def test_dopri5_meets_its_tolerance_and_spends_fewer_evaluations_when_looser():
    x0 = jnp.array([[1.0, 0.5], [-0.3, 2.0]])
    want = np.asarray(x0, np.float64) @ linalg.expm(3 * A.astype(np.float64)).T
    with jax.enable_x64():
        tight, nfe_tight = jax.jit(lambda x: ode.dopri5(linear, x, 0.0, 3.0, 1e-8, 1e-10))(
            x0.astype(jnp.float64))
    loose, nfe_loose = ode.dopri5(linear, x0, 0.0, 3.0, 1e-3, 1e-3)
    np.testing.assert_allclose(tight, want, atol=1e-7)
    np.testing.assert_allclose(loose, want, atol=1e-2)
    assert 7 <= int(nfe_loose) < int(nfe_tight) and (int(nfe_tight) - 1) % 6 == 0
    back, _ = ode.dopri5(linear, loose, 3.0, 0.0, 1e-6, 1e-6)  # backwards in time too
    np.testing.assert_allclose(back, x0, atol=2e-2)
