"""scikit-learn compatible KernelDensity over the jax KDE core (`kde.py`).

Same constructor, attributes and methods as sklearn.neighbors.KernelDensity for the Gaussian kernel
and Euclidean metric (the only ones supported). Evaluation is exact brute force in blocks, so
`algorithm`, `atol`, `rtol`, `breadth_first` and `leaf_size` are accepted and ignored. Bandwidth: a
number h is the isotropic kernel width as in scikit-learn; 'scott' and 'silverman' set bandwidth_ to
the same factor f as scikit-learn but, as SciPy's gaussian_kde, use the kernel covariance
f^2 Cov(X) rather than f^2 I; 'cv' picks f by held-out log-likelihood (kde.cv_factor, with a
fixed seed for the held-out split). Computes in float32 for float32 input and float64 otherwise.
"""

import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.neighbors import KernelDensity as _SklearnKernelDensity
from sklearn.utils.validation import check_is_fitted, validate_data

from genmodels.classical import kde
from genmodels.classical.sklearn_interop import FLOAT_DTYPES, check_sample_weight, jax_key
from genmodels.classical.sklearn_interop import precision, to_numpy


class KernelDensity(BaseEstimator):
    """Gaussian kernel density estimate evaluated in jax (exact, blocked, streaming logsumexp)."""

    _parameter_constraints = dict(_SklearnKernelDensity._parameter_constraints) | {
        # a positive number, or any string: kde.fit checks the rule's name
        'bandwidth': [_SklearnKernelDensity._parameter_constraints['bandwidth'][0], str],
    }

    def __init__(self, *, bandwidth=1.0, algorithm='auto', kernel='gaussian', metric='euclidean',
                 atol=0, rtol=0, breadth_first=True, leaf_size=40, metric_params=None):
        self.bandwidth = bandwidth
        self.algorithm = algorithm
        self.kernel = kernel
        self.metric = metric
        self.atol = atol
        self.rtol = rtol
        self.breadth_first = breadth_first
        self.leaf_size = leaf_size
        self.metric_params = metric_params

    def fit(self, X, y=None, sample_weight=None):
        """Store X (and weights); choose the bandwidth. Returns self."""
        self._validate_params()
        if self.kernel != 'gaussian' or self.metric != 'euclidean':
            raise NotImplementedError(
                f'kernel={self.kernel!r}, metric={self.metric!r}: only the gaussian kernel with '
                'the euclidean metric is implemented.')
        X = validate_data(self, X, dtype=FLOAT_DTYPES)
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, X)
        with precision(X.dtype):
            params = kde.fit(jnp.asarray(X), self.bandwidth,
                             None if sample_weight is None else jnp.asarray(sample_weight),
                             rng=jax_key(0))
            self.params_ = to_numpy(params)
        self.bandwidth_ = float(self.params_['bandwidth'])
        chol = self.params_['kernel_cholesky']
        self.kernel_covariance_ = chol @ chol.T
        return self

    def score_samples(self, X):
        """log density of each row of X."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        dtype = self.params_['points'].dtype
        with precision(dtype):
            return np.asarray(kde.log_density(self.params_, jnp.asarray(X, dtype)))

    def score(self, X, y=None):
        """Total log-likelihood of X (scikit-learn's KernelDensity sums, it does not average)."""
        return float(np.sum(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """Draw n_samples points [n_samples, D]."""
        check_is_fitted(self)
        with precision(self.params_['points'].dtype):
            return np.asarray(kde.sample(self.params_, jax_key(random_state), int(n_samples)))
