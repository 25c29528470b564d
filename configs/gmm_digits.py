"""Gaussian mixture fitted by EM on scikit-learn's 8x8 digits in a PCA space, with an isotropic
Gaussian on the discarded directions so that it is a density on all 64 pixels.

    python train.py --config configs/gmm_digits.py --workdir workdirs/gmm_digits
    python train.py --config configs/gmm_digits.py:smoke --workdir /tmp/gmm_smoke
    python train.py --config configs/gmm_digits.py --workdir workdirs/gmm_digits_diag20 \
        --config.model.n_components=20 --config.model.covariance_type=diag
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'gmm'
    config.objective = 'em'
    config.seed = 0
    config.data = common.data('digits', dequantize=True)
    # pca_components, n_components and reg_covar: the best of {40, 50} x {5, 10, 20} x
    # {1e-4, 1e-3, 3e-3} on 250 held-out train images.
    config.model = ml_collections.ConfigDict({
        'pca_components': 50,     # 0: the mixture on all 64 pixels
        'n_components': 10,
        'covariance_type': 'full',
        'max_iter': 200,
        'tol': 1e-3,
        'reg_covar': 3e-3,        # 1e-6 (scikit-learn's default) overfits: singular components
        'n_init': 4,
        'init_params': 'kmeans',
    })
    config.train = common.fit_train()
    config.eval = common.evaluation()
    config = common.apply_arg(config, arg, 'configs/gmm_digits.py')
    if arg == 'smoke':
        config.model.n_components = 3
        config.model.n_init = 1
        config.model.max_iter = 10
    return config
