"""scikit-learn compatible GaussianMixture over the jax EM core (`em.py`, `gmm.py`).

Same constructor, fitted attributes and methods as sklearn.mixture.GaussianMixture. Differences:
initialisation uses jax random numbers (the same `random_state` gives a different, but reproducible,
start than scikit-learn); 'k-means++' and 'random_from_data' starts have normalised weights (scikit-
learn's sum to K / N); a failed covariance surfaces after fitting rather than at the failing step;
`verbose` output is printed after the (compiled) fit, for the restart that was kept.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as _SklearnGaussianMixture
from sklearn.utils.validation import check_is_fitted, validate_data

from genmodels.classical import em
from genmodels.classical import gmm
from genmodels.classical.sklearn_interop import FLOAT_DTYPES, jax_key, precision, to_numpy


_sample = jax.jit(gmm.sample, static_argnums=(2, 3))


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by EM in jax: jit-compiled, restarts in one program, mesh-aware."""

    _parameter_constraints = dict(_SklearnGaussianMixture._parameter_constraints)

    def __init__(self, n_components=1, *, covariance_type='full', tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params='kmeans', weights_init=None, means_init=None,
                 precisions_init=None, random_state=None, warm_start=False, verbose=0,
                 verbose_interval=10):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    def _initial_params(self, d, dtype):
        """User-given initial parameters (validated with scikit-learn's messages), as the core's
        `init` dict."""
        k, init = self.n_components, {}

        def check_shape(value, shape, name):
            if value.shape != shape:
                raise ValueError(f"The parameter '{name}' should have the shape of {shape}, but "
                                 f'got {value.shape}')

        if self.weights_init is not None:
            weights = np.asarray(self.weights_init, dtype)
            check_shape(weights, (k,), 'weights')
            if np.any(weights < 0) or np.any(weights > 1):
                # scikit-learn's text, which its own tests match: the minimum is printed as
                # 'max value' and the maximum as 'min value'
                raise ValueError("The parameter 'weights' should be in the range [0, 1], but got "
                                 f'max value {weights.min():.5f}, min value {weights.max():.5f}')
            atol = 1e-6 if dtype == np.float32 else 1e-8
            if not np.isclose(abs(1.0 - weights.sum()), 0.0, atol=atol):
                raise ValueError("The parameter 'weights' should be normalized, but got "
                                 f'sum(weights) = {weights.sum():.5f}')
            init['weights'] = weights
        if self.means_init is not None:
            means = np.asarray(self.means_init, dtype)
            check_shape(means, (k, d), 'means')
            init['means'] = means
        if self.precisions_init is not None:
            prec, kind = np.asarray(self.precisions_init, dtype), self.covariance_type
            shape = {'full': (k, d, d), 'tied': (d, d), 'diag': (k, d), 'spherical': (k,)}[kind]
            check_shape(prec, shape, f'{kind} precision')
            if kind in ('full', 'tied'):
                symmetric = np.allclose(prec, np.swapaxes(prec, -1, -2))
                if not (symmetric and np.all(np.linalg.eigvalsh(prec) > 0)):
                    raise ValueError(f"'{kind} precision' should be symmetric, positive-definite")
            elif np.any(prec <= 0):
                raise ValueError(f"'{kind} precision' should be positive")
            init['precisions_cholesky'] = np.asarray(
                gmm.precisions_cholesky_from_precisions(jnp.asarray(prec), kind))
        return init

    def fit(self, X, y=None):
        """Estimate the parameters by EM (best of n_init restarts); returns self."""
        self.fit_predict(X, y)
        return self

    def fit_predict(self, X, y=None):
        """Fit, then return the most probable component of each row of X."""
        self._validate_params()
        X = validate_data(self, X, dtype=FLOAT_DTYPES, ensure_min_samples=2)
        if X.shape[0] < self.n_components:
            raise ValueError('Expected n_samples >= n_components but got '
                             f'n_components = {self.n_components}, n_samples = {X.shape[0]}')
        with precision(X.dtype):
            do_init = not (self.warm_start and hasattr(self, 'converged_'))
            if do_init:
                init, previous = self._initial_params(X.shape[1], X.dtype), None
            else:
                init = {'weights': self.weights_, 'means': self.means_,
                        'precisions_cholesky': self.precisions_cholesky_}
                previous = self.lower_bound_
            params, info = em.fit(
                jnp.asarray(X), jax_key(self.random_state), self.n_components,
                covariance_type=self.covariance_type, tol=self.tol, reg_covar=self.reg_covar,
                max_iter=self.max_iter, n_init=self.n_init if do_init else 1,
                init_params=self.init_params, init=init, previous_lower_bound=previous)
            log_prob = gmm.weighted_log_prob(params, jnp.asarray(X), self.covariance_type)
            labels = jnp.argmax(log_prob, axis=1)  # final E-step: agrees with fit(X).predict(X)
            params['precisions'] = gmm.precisions(params['precisions_cholesky'],
                                                  self.covariance_type)
            params, info, labels = to_numpy((params, info, labels))
        # every fitted array in the input's float dtype, as scikit-learn
        params = {key: value.astype(X.dtype, copy=False) for key, value in params.items()}
        self.weights_, self.means_ = params['weights'], params['means']
        self.covariances_ = params['covariances']
        self.precisions_cholesky_ = params['precisions_cholesky']
        self.precisions_ = params['precisions']
        self.converged_ = bool(info['converged'])
        self.n_iter_ = int(info['n_iter'])
        self.lower_bound_ = float(info['lower_bound'])
        self.lower_bounds_ = [float(v) for v in info['lower_bounds'][:self.n_iter_]]
        self._report()
        if not self.converged_ and self.max_iter > 0:
            warnings.warn('Best performing initialization did not converge. Try different init '
                          'parameters, or increase max_iter, tol, or check for degenerate data.',
                          ConvergenceWarning)
        return labels

    def _report(self):
        """scikit-learn's verbose messages, from the recorded lower-bound trace."""
        if not self.verbose:
            return
        bounds = [-np.inf] + self.lower_bounds_
        for i in range(self.verbose_interval, self.n_iter_ + 1, self.verbose_interval):
            change = f'\t ll change {bounds[i] - bounds[i - 1]:.5f}' if self.verbose >= 2 else ''
            print(f'  Iteration {i}{change}')
        bound = f' lower bound {self.lower_bound_:.5f}.' if self.verbose >= 2 else ''
        print(f"Initialization {'converged' if self.converged_ else 'did not converge'}.{bound}")

    def _params(self):
        return {'weights': self.weights_, 'means': self.means_, 'covariances': self.covariances_,
                'precisions_cholesky': self.precisions_cholesky_}

    def _weighted_log_prob(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        dtype = self.means_.dtype
        with precision(dtype):
            return np.asarray(gmm.weighted_log_prob(
                self._params(), jnp.asarray(X, dtype), self.covariance_type))

    def score_samples(self, X):
        """log p(x) of each row of X."""
        log_prob = self._weighted_log_prob(X)
        top = np.max(log_prob, axis=1, keepdims=True)
        return (top + np.log(np.sum(np.exp(log_prob - top), axis=1, keepdims=True)))[:, 0]

    def score(self, X, y=None):
        """Mean log-likelihood of the rows of X."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X):
        """Most probable component of each row of X."""
        return np.argmax(self._weighted_log_prob(X), axis=1)

    def predict_proba(self, X):
        """Responsibilities r_nk (posterior component probabilities)."""
        log_prob = self._weighted_log_prob(X)
        resp = np.exp(log_prob - np.max(log_prob, axis=1, keepdims=True))
        return resp / np.sum(resp, axis=1, keepdims=True)

    def sample(self, n_samples=1):
        """Draw n_samples points; returns (X [n_samples, D], component labels [n_samples])."""
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples}. The sampling requires "
                             'at least one sample.')
        # drawn in a power-of-two batch and cut to n_samples (the rows are iid), so that requests
        # of many sizes share a few compiled programs
        bucket = max(64, 1 << (n_samples - 1).bit_length())
        with precision(self.means_.dtype):
            x, z = to_numpy(_sample(self._params(), jax_key(self.random_state), bucket,
                                    self.covariance_type))
        x, z = x[:n_samples], z[:n_samples]
        order = np.argsort(z, kind='stable')  # grouped by component, as scikit-learn returns them
        return x[order], z[order].astype(np.int64)

    def _n_parameters(self):
        return gmm.n_parameters(self.covariance_type, *self.means_.shape)

    def bic(self, X):
        """Bayesian information criterion on X (lower is better)."""
        return -2 * self.score(X) * X.shape[0] + self._n_parameters() * np.log(X.shape[0])

    def aic(self, X):
        """Akaike information criterion on X (lower is better)."""
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()
