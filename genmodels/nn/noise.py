"""Per-example randomness keyed by the example's index, so results do not depend on the device count.

A family draws an example's noise (a VAE's reparameterisation noise, a GAN's z, a DDPM's t and
epsilon) from `fold_in(rng, batch['index'][i])`, never from a key split over the local batch: the
same example then gets the same draw on 1 device, 8 devices or 2 processes.

`batch['index']` means, in training, the example's row in the global batch (0 .. B-1; the data
stream already makes each step's rows a pure function of (seed, step), see genmodels/data.py), and
in evaluation (`data.padded_batches`), the example's position in the evaluated split. Either way it
identifies the example within what one key covers: a train step's key, or the whole evaluation's.
"""

from __future__ import annotations

from typing import Sequence

import jax


def keys(rng: jax.Array, index: jax.Array) -> jax.Array:
    """One key per example: fold_in(rng, index[i]) -> [B] keys."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, index)


def normal(rng: jax.Array, index: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Standard normal noise [B, *shape]; row i depends only on (rng, index[i])."""
    return jax.vmap(lambda k: jax.random.normal(k, tuple(shape)))(keys(rng, index))


def uniform(rng: jax.Array, index: jax.Array, shape: Sequence[int]) -> jax.Array:
    """U[0, 1) noise [B, *shape]; row i depends only on (rng, index[i])."""
    return jax.vmap(lambda k: jax.random.uniform(k, tuple(shape)))(keys(rng, index))


def randint(rng: jax.Array, index: jax.Array, low: int, high: int) -> jax.Array:
    """One integer in [low, high) per example [B]; row i depends only on (rng, index[i])."""
    return jax.vmap(lambda k: jax.random.randint(k, (), low, high))(keys(rng, index))
