"""Three bumps but only two Gaussians: a mixture with K = 2 fitted by EM to bumps_1d (three
Gaussian bumps, genmodels/data/toy.py) is misspecified, and eval.json's kl_estimate_nats (test NLL minus
the exact density's) is what that costs; K = 3 is the well-specified fit, with a KL near zero.

    python train.py --config configs/gmm_bumps_1d.py --workdir workdirs/gmm_bumps_1d
    python train.py --config configs/gmm_bumps_1d.py --workdir workdirs/gmm_bumps_1d_k3 \
        --config.model.n_components=3
    python train.py --config configs/gmm_bumps_1d.py:smoke --workdir /tmp/gmm_bumps_1d_smoke
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'gmm'
    config.objective = 'em'
    config.seed = 0
    config.data = common.data('toy_bumps_1d', scale='none')
    config.model = ml_collections.ConfigDict({
        'pca_components': 0,
        'n_components': 2,        # misspecified on purpose; 3 matches the truth
        'covariance_type': 'full',
        'max_iter': 500,
        'tol': 1e-5,
        'reg_covar': 1e-6,
        'n_init': 10,             # K = 2 has several local optima on bumps_1d
        'init_params': 'kmeans',
    })
    config.train = common.fit_train()
    config.eval = common.evaluation(batch_size=1000)
    config = common.apply_arg(config, arg, 'configs/gmm_bumps_1d.py')
    if arg == 'smoke':
        config.model.n_init = 1
        config.model.max_iter = 50
    return config
