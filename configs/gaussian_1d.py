"""One Gaussian fitted in closed form (mu* = mean, sigma*^2 = biased variance; PRML 2.121-2.122) to
bumps_1d: genmodels/data/toy.py has no single-Gaussian 1D toy, so this is the misspecified one-Gaussian
fit of three bumps, to set beside configs/gmm_bumps_1d.py's K = 2 and K = 3 (eval.json's
kl_estimate_nats).

    python train.py --config configs/gaussian_1d.py --workdir workdirs/gaussian_1d
    python train.py --config configs/gaussian_1d.py:smoke --workdir /tmp/gaussian_1d_smoke
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'gaussian'
    config.objective = 'mle'
    config.seed = 0
    config.data = common.data('toy_bumps_1d', scale='none')
    config.model = ml_collections.ConfigDict({
        'pca_components': 0,
        'reg_covar': 0.0,         # one variance from 20,000 points: nothing to regularise
    })
    config.train = common.fit_train()
    config.eval = common.evaluation(batch_size=1000)
    return common.apply_arg(config, arg, 'configs/gaussian_1d.py')
