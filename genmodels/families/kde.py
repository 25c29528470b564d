"""Gaussian kernel density estimation (family 'kde'; Parzen 1962, Silverman 1986 ch. 4).

    p(z) = 1/N sum_i N(z; z_i, H),   H = h^2 I for a number h, or f^2 Cov(train) for a rule

on the pixels or, with model.pca_components = k, on the top-k principal coordinates with an
isotropic residual (density.py). Rules: 'scott', 'silverman', or 'cv': the factor f with the
highest held-out log-likelihood on a grid (genmodels/classical/kde.py).
"""

from __future__ import annotations

import jax

from genmodels.classical import kde
from genmodels.config import ConfigError
from genmodels.families import density

CONFIG_SCHEMA = {
    'model': {
        'pca_components': int,      # 0: a KDE on all pixels; k > 0: on k principal coordinates
        'bandwidth': (str, float),  # 'scott', 'silverman', 'cv', or a number h (H = h^2 I)
        'query_chunk': int,         # rows of the evaluated points per block (memory, not result)
        'point_chunk': int,         # kernel centres per block
    },
}


def bandwidth(config) -> str | float:
    """model.bandwidth as kde.fit takes it; a number may come as a string from the command line."""
    value = config.model.bandwidth
    if not isinstance(value, str) or value in kde.RULES:
        return value
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f'model.bandwidth must be one of {kde.RULES} or a positive number, '
                          f'got {value!r}.') from None


def check_config(config) -> None:
    density.check_config(config)
    value = bandwidth(config)
    if not isinstance(value, str) and not value > 0:
        raise ConfigError(f'model.bandwidth must be positive, got {value}.')
    if config.model.query_chunk < 1 or config.model.point_chunk < 1:
        raise ConfigError('model.query_chunk and model.point_chunk must be positive.')


def fit_kde(config, z: jax.Array, rng: jax.Array):
    params = kde.fit(z, bandwidth(config), rng=rng)
    # The kernel scale: the factor f of a rule, or h itself.
    return params, {'kde_bandwidth': float(params['bandwidth'])}


OBJECTIVES = {'kde': fit_kde}

ESTIMATOR = density.Estimator(
    name='KDE',
    objectives=OBJECTIVES,
    log_prob=lambda config, params, z: kde.log_density(
        params, z, query_chunk=config.model.query_chunk, point_chunk=config.model.point_chunk),
    sample=lambda config, params, rng, num: kde.sample(params, rng, num),
)


# The family contract (density.py).
fit, log_likelihood, evaluate, sample, figures = density.contract(ESTIMATOR)
