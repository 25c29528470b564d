"""What the scikit-learn estimator classes share: precision scope, seeds, weight checks.

Estimators compute in the input's precision as scikit-learn does: float32 data in float32, anything
else in float64 (64-bit jax enabled for the duration of the call only).
"""

import contextlib

import jax
import numpy as np
from sklearn.utils import check_random_state

FLOAT_DTYPES = (np.float64, np.float32)


def precision(dtype):
    """Context in which jax computes in `dtype` (enables 64-bit jax for float64)."""
    return jax.enable_x64(True) if np.dtype(dtype) == np.float64 else contextlib.nullcontext()


def jax_key(random_state):
    """A jax.random key drawn from a scikit-learn random_state (None, int or RandomState)."""
    return jax.random.key(int(check_random_state(random_state).randint(np.iinfo(np.int32).max)))


def to_numpy(tree):
    """Host copies (numpy arrays) of a pytree of jax arrays, for fitted attributes and outputs."""
    return jax.tree.map(np.asarray, tree)


def check_sample_weight(sample_weight, X):
    """Weights [N] (a scalar is broadcast), finite and non-negative, in X's dtype."""
    weights = np.asarray(sample_weight, X.dtype)
    weights = np.full(X.shape[:1], weights) if weights.ndim == 0 else weights
    if weights.shape != X.shape[:1]:
        raise ValueError(f'sample_weight.shape == {weights.shape}, expected {X.shape[:1]}!')
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError('Negative or non-finite values in sample_weight; expected weights >= 0.')
    if not np.any(weights > 0):
        raise ValueError('All sample weights are zero; at least one weight must be positive.')
    return weights
