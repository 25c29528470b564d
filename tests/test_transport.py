"""Optimal transport (genmodels/nn/transport.py): the assignment against every permutation, the
Sinkhorn plan's marginals and its limit, and the exact 2-Wasserstein distance against the sorted
matching of 1D samples and SciPy's assignment in 2D."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from genmodels.nn import transport


def _points(seed: int, n: int, dim: int = 2):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, dim)).astype(np.float32), (2 * r.normal(size=(n, dim)) + 1).astype(
        np.float32)


@pytest.mark.parametrize('seed', range(5))
def test_the_assignment_is_the_best_of_all_permutations(seed):
    x, y = _points(seed, 6)
    cost = np.asarray(transport.squared_distances(x, y))
    np.testing.assert_allclose(cost, ((x[:, None] - y[None]) ** 2).sum(-1), rtol=1e-5, atol=1e-5)
    sigma = np.asarray(jax.jit(transport.assignment)(cost))
    best = min(itertools.permutations(range(6)), key=lambda p: cost[np.arange(6), list(p)].sum())
    assert list(sigma) == list(best)


def test_the_assignment_runs_under_vmap_and_matches_scipy_on_a_batch_of_128():
    costs = jnp.stack([transport.squared_distances(*_points(s, 128, 784)) for s in range(2)])
    sigmas = np.asarray(jax.jit(jax.vmap(transport.assignment))(costs))
    for cost, sigma in zip(np.asarray(costs), sigmas):
        assert sorted(sigma) == list(range(128))
        rows, cols = scipy.optimize.linear_sum_assignment(cost.astype(np.float64))
        assert cost[np.arange(128), sigma].sum() == pytest.approx(cost[rows, cols].sum(), rel=1e-7)


def test_the_sinkhorn_plan_has_uniform_marginals_and_tends_to_the_assignment():
    x, y = _points(0, 32)
    cost = transport.squared_distances(x, y)
    plan = np.asarray(transport.sinkhorn(cost, 0.05))
    np.testing.assert_allclose(plan.sum(0), 1 / 32, rtol=1e-4)
    np.testing.assert_allclose(plan.sum(1), 1 / 32, rtol=1e-3)
    # As the regularisation falls, the plan's cost tends to the optimal assignment's (over N).
    sigma = np.asarray(transport.assignment(cost.T))
    optimum = float(np.asarray(cost).T[np.arange(32), sigma].mean())
    gaps = [float(jnp.sum(transport.sinkhorn(cost, reg, num_iters=2000) * cost)) / optimum - 1
            for reg in (0.1, 0.01, 0.002)]
    assert gaps[0] > gaps[1] > abs(gaps[2]) and abs(gaps[2]) < 2e-3, gaps  # marginals to 1e-3


def test_sample_plan_draws_each_columns_row_at_its_share():
    plan = jnp.array([[0.3, 0.0], [0.1, 0.5], [0.0, 0.1]])  # columns: (3/4, 1/4, 0), (0, 5/6, 1/6)
    keys = jax.random.split(jax.random.key(1), 20_000)
    rows = np.asarray(jax.vmap(lambda k: transport.sample_plan(k, plan))(keys))
    np.testing.assert_allclose(np.bincount(rows[:, 0], minlength=3) / 20_000, [0.75, 0.25, 0],
                               atol=0.01)
    np.testing.assert_allclose(np.bincount(rows[:, 1], minlength=3) / 20_000, [0, 5 / 6, 1 / 6],
                               atol=0.01)


def test_wasserstein2_is_the_sorted_matching_in_1d_and_scipys_assignment_in_2d():
    r = np.random.default_rng(3)
    a, b = r.normal(size=(500, 1)), r.exponential(size=(500, 1))
    want = np.sqrt(np.mean((np.sort(a[:, 0]) - np.sort(b[:, 0])) ** 2))
    assert transport.wasserstein2(a, b) == pytest.approx(want, rel=1e-10)
    x, y = (v.astype(np.float64) for v in _points(4, 300))
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    assert transport.wasserstein2(x, y) == pytest.approx(np.sqrt(cost[rows, cols].mean()),
                                                         rel=1e-10)
