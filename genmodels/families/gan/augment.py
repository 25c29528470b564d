"""Differentiable augmentation (Zhao et al. 2020, "DiffAugment") of every image D sees.

Real or generated, in D's and in G's step, each image goes through the same random
transformation, so D cannot memorise a small training set while G still gets gradients through
the transformation. Ratios and fills as in the paper's code: translation by up to 1/8 of the size
with zero padding, a cutout square of half the size set to 0 (in model space).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

AUGMENT_STREAM = 7  # fold_in word of the augmentation draws, apart from the objectives' noise
TRANSLATION_RATIO, CUTOUT_RATIO = 0.125, 0.5


def _translation(x, key):
    h, w, c = x.shape
    ry, rx = round(h * TRANSLATION_RATIO), round(w * TRANSLATION_RATIO)
    dy = jax.random.randint(key, (), -ry, ry + 1)
    dx = jax.random.randint(jax.random.fold_in(key, 1), (), -rx, rx + 1)
    padded = jnp.pad(x, ((ry, ry), (rx, rx), (0, 0)))
    return jax.lax.dynamic_slice(padded, (ry - dy, rx - dx, 0), (h, w, c))


def _cutout(x, key):
    h, w, _ = x.shape
    sy, sx = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    cy = jax.random.randint(key, (), 0, h + (1 - sy % 2))
    cx = jax.random.randint(jax.random.fold_in(key, 1), (), 0, w + (1 - sx % 2))
    ys = jnp.arange(h)[:, None] - cy + sy // 2  # inside the square: 0 <= ys < sy
    xs = jnp.arange(w)[None, :] - cx + sx // 2
    inside = (ys >= 0) & (ys < sy) & (xs >= 0) & (xs < sx)
    return jnp.where(inside[..., None], jnp.zeros((), x.dtype), x)


AUGMENTS: dict[str, Callable] = {'translation': _translation, 'cutout': _cutout}


def diff_augment(config, x: jax.Array, keys: jax.Array) -> jax.Array:
    """Images [B, H, W, C] each transformed by loss.augment's ops in order, drawn from its key
    [B] (the first B rows of `keys`, so R1 on a part of the batch keeps its rows' draws)."""
    ops = [AUGMENTS[name] for name in filter(None, config.loss.augment.split(','))]
    if not ops:
        return x

    def one(image, key):
        for i, op in enumerate(ops):
            image = op(image, jax.random.fold_in(key, i))
        return image
    return jax.vmap(one)(x, keys[:x.shape[0]])
