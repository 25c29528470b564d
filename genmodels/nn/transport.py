"""Optimal transport between two batches of points: the couplings of minibatch OT flow matching
(Tong et al. 2024; Pooladian et al. 2023).

For x [N, ...] and y [N, ...] the cost is the squared Euclidean distance C_ij = |x_i - y_j|^2.

`assignment(cost)` solves the assignment problem min_sigma sum_i C_{i, sigma(i)} over permutations:
the exact OT plan between two empirical measures of N equal-weight points (Birkhoff-von Neumann).
It runs on the host, SciPy's `linear_sum_assignment` (a shortest augmenting path method, O(N^3))
called from the jitted step through `jax.pure_callback`, as TorchCFM calls POT's network simplex on
the CPU: about a millisecond at N = 128. An auction algorithm in JAX (Bertsekas 1988, all
unassigned rows bidding at once, epsilon scaling) was measured first and needed about 900 bidding
rounds at N = 128, 2.6 s a batch on this project's CPU, and 53 s at N = 256.

`sinkhorn(cost, reg)` is the entropic plan (Cuturi 2013) by log-domain Sinkhorn iterations in JAX,
with the regularisation `reg` relative to the mean cost; `sample_plan` draws, for each column j, a
row from the plan's column (pi(i | j)): every y_j is kept once and its partner drawn.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import ot
import scipy.optimize
import scipy.spatial.distance


def squared_distances(x: jax.Array, y: jax.Array) -> jax.Array:
    """C [N, M]: |x_i - y_j|^2 over all trailing axes."""
    x = x.reshape(x.shape[0], -1).astype(jnp.float32)
    y = y.reshape(y.shape[0], -1).astype(jnp.float32)
    sq = (jnp.sum(x * x, 1)[:, None] + jnp.sum(y * y, 1)[None, :]
          - 2.0 * jnp.matmul(x, y.T, precision=jax.lax.Precision.HIGHEST))
    return jnp.maximum(sq, 0.0)


def _host_assignment(cost: np.ndarray) -> np.ndarray:
    return scipy.optimize.linear_sum_assignment(np.asarray(cost, np.float64))[1].astype(np.int32)


def assignment(cost: jax.Array) -> jax.Array:
    """sigma [N] int32, the permutation minimising sum_i cost[i, sigma[i]] (cost [N, N])."""
    n = cost.shape[0]
    if cost.shape != (n, n):
        raise ValueError(f'assignment needs a square cost matrix, got {cost.shape}.')
    return jax.pure_callback(_host_assignment, jax.ShapeDtypeStruct((n,), jnp.int32), cost,
                             vmap_method='sequential')


def sinkhorn(cost: jax.Array, reg: float, num_iters: int = 200) -> jax.Array:
    """The entropic OT plan [N, M] between uniform weights (rows sum to 1/N, columns to 1/M),
    regularised by reg times the mean cost, by log-domain Sinkhorn iterations."""
    n, m = cost.shape
    scaled = -cost / (reg * jnp.maximum(jnp.mean(cost), 1e-30))
    log_a, log_b = -jnp.log(n) * jnp.ones((n,)), -jnp.log(m) * jnp.ones((m,))

    def update(potentials, _):
        f, g = potentials
        f = log_a - jax.nn.logsumexp(scaled + g[None, :], axis=1)
        g = log_b - jax.nn.logsumexp(scaled + f[:, None], axis=0)
        return (f, g), None

    (f, g), _ = jax.lax.scan(update, (jnp.zeros((n,)), jnp.zeros((m,))), None, length=num_iters)
    return jnp.exp(scaled + f[:, None] + g[None, :])


def sample_plan(rng: jax.Array, plan: jax.Array) -> jax.Array:
    """For each column j of plan [N, M], a row drawn from pi(. | j): [M] int32."""
    return jax.random.categorical(rng, jnp.log(jnp.maximum(plan, 1e-30)), axis=0).astype(jnp.int32)


def wasserstein2(x: np.ndarray, y: np.ndarray) -> float:
    """The exact 2-Wasserstein distance between the empirical measures of x [N, D] and y [M, D]
    (equal weights), on the host by POT's network simplex (`ot.emd2`): 78 s for 10,000 points
    against 10,000 on this project's CPU, where SciPy's assignment takes 136 s for 5,000."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f'wasserstein2 needs two sets of points [N, D], got {x.shape} and '
                         f'{y.shape}.')
    cost = scipy.spatial.distance.cdist(x, y, 'sqeuclidean')
    a, b = np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y))
    value, log = ot.emd2(a, b, cost, numItermax=10**9, log=True)
    if log.get('warning'):
        raise RuntimeError(f'the network simplex did not reach the optimum: {log["warning"]}')
    return float(np.sqrt(value))
