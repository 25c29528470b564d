"""scikit-learn compatible KernelDensity over the jax KDE cores (`kde.py`, `kde_kernels.py`).

Same constructor, attributes and methods as sklearn.neighbors.KernelDensity: every kernel
(gaussian, tophat, epanechnikov, exponential, linear, cosine) and the metrics euclidean,
manhattan, chebyshev, minkowski (p from metric_params) and haversine, with scikit-learn's kernel
normalisation; `sample` for the gaussian and tophat kernels (NotImplementedError for the others,
as scikit-learn). Evaluation is exact brute force in blocks, so `atol`, `rtol`, `breadth_first`
and `leaf_size` are accepted and ignored; `algorithm` only decides, as in scikit-learn, which
metrics are valid ('kd_tree': KDTree's). Bandwidth: a number h, or 'scott' / 'silverman' with
scikit-learn's factors on the number of rows, all isotropic (kernel covariance h^2 I). One
extension, 'cv' (gaussian kernel, euclidean metric): f chosen by held-out log-likelihood
(kde.cv_factor, fixed seed for the held-out split) with SciPy's kernel covariance f^2 Cov(X), as
the `kde` family's rules. Computes in float32 for float32 input and float64 otherwise.
"""

import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.neighbors import BallTree, KDTree
from sklearn.neighbors import KernelDensity as _SklearnKernelDensity
from sklearn.utils.validation import check_is_fitted, validate_data

from genmodels.classical import kde, kde_kernels
from genmodels.classical.sklearn_interop import FLOAT_DTYPES, check_sample_weight, jax_key
from genmodels.classical.sklearn_interop import precision, to_numpy


class KernelDensity(BaseEstimator):
    """Kernel density estimate evaluated in jax (exact, blocked, streaming logsumexp)."""

    _parameter_constraints = dict(_SklearnKernelDensity._parameter_constraints) | {
        # a positive number, or any string: fit checks the rule's name
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

    def _check_metric(self) -> tuple[str, float]:
        """scikit-learn's metric rules for `algorithm`, then the metric this class computes."""
        metric, trees = self.metric, {'kd_tree': KDTree, 'ball_tree': BallTree}
        if self.algorithm == 'auto':
            if metric not in KDTree.valid_metrics and metric not in BallTree.valid_metrics:
                raise ValueError(f"invalid metric: '{metric}'")
        elif metric not in trees[self.algorithm].valid_metrics:
            raise ValueError(f"invalid metric for {trees[self.algorithm]}: '{metric}'")
        if kde_kernels.ALIASES.get(metric, metric) not in kde_kernels.METRICS:
            raise NotImplementedError(
                f'metric={metric!r} is not implemented; use one of '
                f'{kde_kernels.METRICS + tuple(kde_kernels.ALIASES)}.')
        return kde_kernels.canonical_metric(metric, self.metric_params)

    def fit(self, X, y=None, sample_weight=None):
        """Store X (and weights); choose the bandwidth. Returns self."""
        self._validate_params()
        self.metric_name_, self.minkowski_p_ = self._check_metric()
        X = validate_data(self, X, dtype=FLOAT_DTYPES)
        n, d = X.shape
        if self.metric_name_ == 'haversine' and d != 2:
            raise ValueError(f'the haversine metric needs 2 features (latitude, longitude in '
                             f'radians); X has {d}.')
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, X)
        weights = np.ones(n, X.dtype) if sample_weight is None else sample_weight
        if self.bandwidth == 'cv':
            if self.kernel != 'gaussian' or self.metric_name_ != 'euclidean':
                raise ValueError("bandwidth='cv' is implemented for the gaussian kernel with the "
                                 'euclidean metric; give a number, scott or silverman.')
            with precision(X.dtype):
                params = kde.fit(jnp.asarray(X), 'cv', jnp.asarray(weights), rng=jax_key(0))
                self.params_ = to_numpy(params)
        else:
            if self.bandwidth == 'scott':  # scikit-learn's rules: isotropic, n = rows
                h = n ** (-1 / (d + 4))
            elif self.bandwidth == 'silverman':
                h = (n * (d + 2) / 4) ** (-1 / (d + 4))
            elif isinstance(self.bandwidth, str):
                raise ValueError(f"bandwidth={self.bandwidth!r}; expected a positive number, "
                                 "'scott', 'silverman' or 'cv'.")
            else:
                h = float(self.bandwidth)
            self.params_ = {'points': X, 'log_weights': np.log(weights / weights.sum()),
                            'kernel_cholesky': h * np.eye(d, dtype=X.dtype),
                            'bandwidth': np.asarray(h, X.dtype)}
        self.bandwidth_ = float(self.params_['bandwidth'])
        chol = self.params_['kernel_cholesky']
        self.kernel_covariance_ = chol @ chol.T
        return self

    def _fast_path(self) -> bool:
        """Gaussian kernel, euclidean metric: kde.py's one matmul per block."""
        return self.kernel == 'gaussian' and self.metric_name_ == 'euclidean'

    def score_samples(self, X):
        """log density of each row of X (-inf where it is zero)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        params = self.params_
        with precision(params['points'].dtype):
            X = jnp.asarray(X, params['points'].dtype)
            if self._fast_path():
                return np.asarray(kde.log_density(params, X))
            return np.asarray(kde_kernels.log_density(
                params['points'], params['log_weights'], params['bandwidth'], X, self.kernel,
                self.metric_name_, self.minkowski_p_))

    def score(self, X, y=None):
        """Total log-likelihood of X (scikit-learn's KernelDensity sums, it does not average)."""
        return float(np.sum(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """Draw n_samples points [n_samples, D] (gaussian and tophat kernels)."""
        check_is_fitted(self)
        if self.kernel not in kde_kernels.SAMPLED:
            raise NotImplementedError(f'sampling is implemented for the kernels '
                                      f'{kde_kernels.SAMPLED}, not {self.kernel!r}.')
        params, key = self.params_, jax_key(random_state)
        with precision(params['points'].dtype):
            if self.bandwidth == 'cv':  # kernel covariance f^2 Cov(X)
                return np.asarray(kde.sample(params, key, int(n_samples)))
            return np.asarray(kde_kernels.sample(
                params['points'], np.exp(params['log_weights']), params['bandwidth'], key,
                int(n_samples), self.kernel))
