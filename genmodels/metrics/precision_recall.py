"""Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN hypersphere manifolds.

The manifold of a set is the union of balls around its points, each with the radius of the point's
k-th nearest neighbour in the same set (Sec. 3, Eq. 1). Precision is the fraction of fake samples
inside the real manifold; recall is the fraction of real samples inside the fake manifold (Eq. 2).
Distances are computed block by block, so memory is O(batch_size^2), not O(N^2).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np


def _sq_dists(a, b):  # [M, D], [N, D] -> [M, N]
    ab = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2.0 * ab, 0.0)


@functools.partial(jax.jit, static_argnums=4)
def _merge_smallest(smallest, a, b, b_valid, k):
    """Keeps the k+1 smallest squared distances per row of a, so far, after seeing block b."""
    d = jnp.where(b_valid[None, :], _sq_dists(a, b), jnp.inf)
    return -jax.lax.top_k(jnp.concatenate([-smallest, -d], axis=1), k + 1)[0]


@jax.jit
def _inside_any_ball(inside, a, b, b_sq_radii):
    return inside | jnp.any(_sq_dists(a, b) <= b_sq_radii[None, :], axis=1)


def _pad(x, multiple):
    """x [N, ...] padded with zeros to a multiple of `multiple` rows, so every block has one shape
    and each jitted block function compiles once."""
    return jnp.pad(x, [(0, -len(x) % multiple)] + [(0, 0)] * (x.ndim - 1))


def knn_sq_radii(x, k: int, block: int) -> jax.Array:
    """Squared distance from each row of x [N, D] to its k-th nearest other row -> [N]."""
    n, xp = len(x), _pad(x, block)
    valid = jnp.arange(len(xp)) < n
    out = []
    for i in range(0, n, block):
        smallest = jnp.full((block, k + 1), jnp.inf, x.dtype)
        for j in range(0, n, block):
            smallest = _merge_smallest(smallest, xp[i:i + block], xp[j:j + block],
                                       valid[j:j + block], k)
        out.append(smallest[:, k])  # index 0 is the point itself (distance 0)
    return jnp.concatenate(out)[:n]


def fraction_inside(query, ref, ref_sq_radii, block: int) -> float:
    """Fraction of rows of query [M, D] inside the manifold of ref [N, D] (Eq. 1)."""
    m, n, qp, rp = len(query), len(ref), _pad(query, block), _pad(ref, block)
    radii = jnp.pad(ref_sq_radii, (0, len(rp) - n), constant_values=-jnp.inf)  # padding: no ball
    hits = 0
    for i in range(0, m, block):
        inside = jnp.zeros(block, bool)
        for j in range(0, n, block):
            inside = _inside_any_ball(inside, qp[i:i + block], rp[j:j + block], radii[j:j + block])
        hits += int(inside[:min(block, m - i)].sum())
    return hits / m


def precision_recall(real_features, fake_features, k: int = 3,
                     batch_size: int = 2048) -> tuple[float, float]:
    """(precision, recall) of fake features [M, D] against real features [N, D]."""
    real = np.asarray(real_features, np.float32)
    fake = np.asarray(fake_features, np.float32)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f'features must be [N, D] and [M, D], got {real.shape} and {fake.shape}')
    if min(len(real), len(fake)) <= k:
        raise ValueError(f'each set needs more than k={k} samples, got {len(real)} and {len(fake)}')
    # Distances do not change under a shared shift; centring keeps |x|^2 small, so the float32
    # expansion |a|^2 + |b|^2 - 2 a.b loses fewer digits.
    centre = real.mean(axis=0)
    real, fake = jnp.asarray(real - centre), jnp.asarray(fake - centre)
    block = min(batch_size, max(len(real), len(fake)))
    precision = fraction_inside(fake, real, knn_sq_radii(real, k, block), block)
    recall = fraction_inside(real, fake, knn_sq_radii(fake, k, block), block)
    return precision, recall
