"""Row chunking: run a function over fixed-size blocks of rows so memory stays bounded."""

import jax.numpy as jnp
from jax import lax


def to_chunks(a, chunk, fill=0):
    """[N, ...] -> [ceil(N / chunk), chunk, ...], padded at the end with `fill`."""
    n = a.shape[0]
    steps = -(-n // chunk)
    a = jnp.pad(a, [(0, steps * chunk - n)] + [(0, 0)] * (a.ndim - 1), constant_values=fill)
    return a.reshape(steps, chunk, *a.shape[1:])


def map_rows(fn, x, chunk):
    """fn ([C, ...] -> [C, ...]) applied to blocks of at most `chunk` rows of x, outputs joined."""
    n = x.shape[0]
    chunk = max(1, min(chunk, n))
    out = lax.map(fn, to_chunks(x, chunk))
    return out.reshape(-1, *out.shape[2:])[:n]
