"""Gaussian mixture fitted by EM to the two moons (genmodels/data/toy.py): 20,000 train points, scored
on 10,000 test points against the exact density (eval.json's kl_estimate_nats).

    python train.py --config configs/gmm_toy2d.py --workdir workdirs/gmm_toy2d
    python train.py --config configs/gmm_toy2d.py:smoke --workdir /tmp/gmm_toy2d_smoke
    python train.py --config configs/gmm_toy2d.py --workdir workdirs/gmm_grid25 \
        --config.data.name=toy_grid_25 --config.model.n_components=25
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'gmm'
    config.objective = 'em'
    config.seed = 0
    config.data = common.data('toy_two_moons', scale='none')
    config.model = ml_collections.ConfigDict({
        'pca_components': 0,      # the mixture on the 2D points themselves
        'n_components': 9,        # the lowest BIC of K = 1..20 (tools/gmm_toy2d.py)
        'covariance_type': 'full',
        'max_iter': 500,
        'tol': 1e-4,
        'reg_covar': 1e-6,        # 2D and 20,000 points: no component collapses
        'n_init': 3,
        'init_params': 'kmeans',
    })
    config.train = common.fit_train()
    config.eval = common.evaluation(batch_size=1000)
    config = common.apply_arg(config, arg, 'configs/gmm_toy2d.py')
    if arg == 'smoke':
        config.model.n_init = 1
        config.model.max_iter = 50
    return config
