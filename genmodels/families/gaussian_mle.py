"""Gaussian maximum likelihood in closed form (family 'gaussian'; Bishop, PRML Eqs. 2.121-2.122).

    mu* = mean of the training images,  Sigma* = their (biased) covariance + reg_covar I

on the pixels, or, with model.pca_components = k, on the top-k principal coordinates with an
isotropic residual: probabilistic PCA (Tipping & Bishop 1999; see density.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genmodels.classical import gaussian
from genmodels.config import ConfigError
from genmodels.families import density

CONFIG_SCHEMA = {
    'model': {
        'pca_components': int,  # 0: a Gaussian on all pixels; k > 0: probabilistic PCA with k
        'reg_covar': float,     # added to the covariance's diagonal, as scikit-learn's GMM
    },
}


def check_config(config) -> None:
    density.check_config(config)
    if config.model.reg_covar < 0:
        raise ConfigError(f'model.reg_covar must be >= 0, got {config.model.reg_covar}.')


def fit_mle(config, z: jax.Array, rng: jax.Array):
    params = gaussian.fit(z)
    cov = params['covariance'] + config.model.reg_covar * jnp.eye(z.shape[1], dtype=z.dtype)
    return {'mean': params['mean'], 'covariance': cov}, {}


OBJECTIVES = {'mle': fit_mle}

ESTIMATOR = density.Estimator(
    name='Gaussian (MLE)',
    objectives=OBJECTIVES,
    log_prob=lambda config, params, z: gaussian.log_prob(params, z),
    sample=lambda config, params, rng, num: gaussian.sample(params, rng, num),
)


# The family contract (density.py).
fit, log_likelihood, evaluate, sample, figures = density.contract(ESTIMATOR)
