"""scikit-learn compatible GaussianMLE over the jax closed-form core (`gaussian.py`).

scikit-learn has no Gaussian density estimator as such; this one follows
sklearn.covariance.EmpiricalCovariance (constructor, location_, covariance_, precision_, score,
mahalanobis, get_precision) and adds sample weights, score_samples and sample.
Computes in float32 for float32 input and float64 otherwise.
"""

import jax.numpy as jnp
import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.covariance import EmpiricalCovariance
from sklearn.utils.validation import check_is_fitted, validate_data

from genmodels.classical import gaussian
from genmodels.classical.sklearn_interop import FLOAT_DTYPES, check_sample_weight, jax_key
from genmodels.classical.sklearn_interop import precision, to_numpy


class GaussianMLE(DensityMixin, BaseEstimator):
    """Multivariate Gaussian fitted by maximum likelihood (closed form), optionally weighted."""

    _parameter_constraints = dict(EmpiricalCovariance._parameter_constraints)

    def __init__(self, *, store_precision=True, assume_centered=False):
        self.store_precision = store_precision
        self.assume_centered = assume_centered

    def fit(self, X, y=None, sample_weight=None):
        """mean_w and the MLE covariance of X (about 0 when assume_centered). Returns self."""
        self._validate_params()
        X = validate_data(self, X, dtype=FLOAT_DTYPES)
        weights = None if sample_weight is None else check_sample_weight(sample_weight, X)
        with precision(X.dtype):
            if self.assume_centered:  # Sigma* = sum_n w_n x_n x_n^T / sum w
                w = np.ones(X.shape[0], X.dtype) if weights is None else weights
                params = {'mean': np.zeros(X.shape[1], X.dtype),
                          'covariance': (X * w[:, None]).T @ X / w.sum()}
            else:
                w = None if weights is None else jnp.asarray(weights)
                params = to_numpy(gaussian.fit(jnp.asarray(X), w))
        self.location_, self.covariance_ = params['mean'], params['covariance']
        self.precision_ = linalg.pinvh(self.covariance_) if self.store_precision else None
        return self

    def get_precision(self):
        """The precision matrix (pseudo-inverse of covariance_)."""
        check_is_fitted(self)
        return self.precision_ if self.store_precision else linalg.pinvh(self.covariance_)

    def _params(self):
        return {'mean': self.location_, 'covariance': self.covariance_}

    def score_samples(self, X):
        """log N(x; location_, covariance_) of each row of X."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        dtype = self.location_.dtype
        with precision(dtype):
            return np.asarray(gaussian.log_prob(self._params(), jnp.asarray(X, dtype)))

    def score(self, X, y=None):
        """Mean log-likelihood of the rows of X (EmpiricalCovariance.score)."""
        return float(np.mean(self.score_samples(X)))

    def mahalanobis(self, X):
        """Squared Mahalanobis distances (x - location_)^T precision (x - location_)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        centered = X - self.location_
        return np.sum(centered @ self.get_precision() * centered, axis=1)

    def sample(self, n_samples=1, random_state=None):
        """Draw n_samples points [n_samples, D]."""
        check_is_fitted(self)
        with precision(self.location_.dtype):
            key = jax_key(random_state)
            return np.asarray(gaussian.sample(self._params(), key, int(n_samples)))
