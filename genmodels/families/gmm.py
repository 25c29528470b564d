"""Gaussian mixture fitted by expectation-maximisation (family 'gmm'; Dempster, Laird & Rubin 1977;
Bishop, PRML Sec. 9.2), on the pixels or, with model.pca_components = k, on the top-k principal
coordinates with an isotropic residual (density.py).

    p(z) = sum_k a_k N(z; mu_k, Sigma_k)                                              (PRML 9.7)

EM, its initialisations and restarts are genmodels/classical/em.py; the parameters keep the EM
trace (`lower_bounds`: the mean train log-likelihood of z before each M-step) for the figures.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import logging

from genmodels import config as config_lib, data as data_lib, viz
from genmodels.classical import em, gmm
from genmodels.config import ConfigError
from genmodels.families import density

CONFIG_SCHEMA = {
    'model': {
        'pca_components': int,   # 0: a mixture on all pixels; k > 0: on k principal coordinates
        'n_components': int,
        'covariance_type': str,  # 'full', 'tied', 'diag' or 'spherical'
        'max_iter': int,         # EM iterations at most
        'tol': float,            # stop when the mean log-likelihood changes by less
        'reg_covar': float,      # added to every covariance's diagonal
        'n_init': int,           # restarts, run together under vmap; the best is kept
        'init_params': str,      # 'kmeans', 'k-means++', 'random' or 'random_from_data'
    },
}


def check_config(config) -> None:
    density.check_config(config)
    m = config.model
    config_lib.check_choice(config, 'model.covariance_type', gmm.COVARIANCE_TYPES)
    config_lib.check_choice(config, 'model.init_params', em.INIT_METHODS)
    if min(m.n_components, m.max_iter, m.n_init) < 1 or min(m.tol, m.reg_covar) < 0:
        raise ConfigError('model.n_components, max_iter and n_init must be >= 1, tol and '
                          f'reg_covar >= 0; got {m.to_dict()}.')


def fit_em(config, z: jax.Array, rng: jax.Array):
    m = config.model
    params, info = em.fit(z, rng, m.n_components, covariance_type=m.covariance_type, tol=m.tol,
                          reg_covar=m.reg_covar, max_iter=m.max_iter, n_init=m.n_init,
                          init_params=m.init_params)
    n_iter, converged = int(info['n_iter']), bool(info['converged'])
    if not converged:
        logging.warning('EM did not converge in %d iterations (tol %g); raise model.max_iter.',
                        n_iter, m.tol)
    params['lower_bounds'] = info['lower_bounds'][:n_iter]  # the rest is NaN padding
    return params, {'em_iterations': n_iter, 'em_converged': int(converged),
                    'em_lower_bound_nats': float(info['lower_bound'])}


OBJECTIVES = {'em': fit_em}

ESTIMATOR = density.Estimator(
    name='GMM',
    objectives=OBJECTIVES,
    log_prob=lambda config, params, z: gmm.log_prob(params, z, config.model.covariance_type),
    sample=lambda config, params, rng, num: gmm.sample(params, rng, num,
                                                       config.model.covariance_type)[0],
)


# The family contract (density.py); figures add the EM trace and, in 2D, the ellipses.
fit, log_likelihood, evaluate, sample, _ = density.contract(ESTIMATOR)


def full_covariances(covariances: np.ndarray, covariance_type: str, k: int, d: int
                     ) -> np.ndarray:
    """[K, D, D] from any of the four layouts: full [K, D, D], tied [D, D], diag [K, D],
    spherical [K] (scikit-learn's)."""
    if covariance_type == 'full':
        return covariances
    if covariance_type == 'tied':
        return np.broadcast_to(covariances, (k, d, d))
    variances = covariances if covariance_type == 'diag' else covariances[:, None] * np.ones(d)
    return variances[:, :, None] * np.eye(d)  # [K, D] on the diagonals


def figures(config, params, data, rng: jax.Array, out_dir: str) -> list[str]:
    """density.figures, plus the EM trace and the components: the means as images, or on 2D toy
    data fitted without PCA, the components' ellipses over the train points."""
    where = ' (PCA coordinates)' if 'components' in params else ''
    est = jax.tree.map(np.asarray, params['estimator'])
    paths = density.figures(config, params, data, rng, out_dir, ESTIMATOR) + [
        viz.save_curve(est['lower_bounds'], f'{out_dir}/em_log_likelihood.png',
                       f'EM on the train split{where}', 'iteration', 'mean log-likelihood (nats)')]
    if data_lib.is_toy(config.data.name):
        if est['means'].shape[1] == 2 and 'components' not in params:
            train = data_lib.load_split(config.data, config.data.train_split)['image']
            k = len(est['weights'])
            covariances = full_covariances(est['covariances'], config.model.covariance_type, k, 2)
            paths.append(viz.save_ellipses(
                est['weights'], est['means'], covariances, train.reshape(len(train), 2),
                f'{out_dir}/ellipses.png', f'GMM, K = {k}: 1- and 2-sigma ellipses'))
        return paths
    lo, hi = data_lib.value_range(config.data)
    means = np.clip(np.asarray(density.unproject(params, est['means'])), lo, hi)
    return paths + [viz.save_grid(means, f'{out_dir}/gmm_means.png', 'GMM component means', lo, hi)]
