"""Gaussian maximum likelihood (closed form) on the bundled MNIST digits, uniformly dequantised.

    python train.py --config configs/gaussian_mnist.py --workdir workdirs/gaussian_mnist
    python train.py --config configs/gaussian_mnist.py:smoke --workdir /tmp/gaussian_smoke
    python train.py --config configs/gaussian_mnist.py --workdir workdirs/ppca_mnist \
        --config.model.pca_components=50      # probabilistic PCA
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'gaussian'
    config.objective = 'mle'
    config.seed = 0
    config.data = common.data('mnist_bundled', dequantize=True)
    config.model = ml_collections.ConfigDict({
        'pca_components': 0,    # 0: full covariance on all 784 pixels; k > 0: probabilistic PCA
        'reg_covar': 3e-5,      # best of 1e-5..1e-2 on 500 held-out train images
    })
    config.train = common.fit_train()
    config.eval = common.evaluation()
    return common.apply_arg(config, arg, 'configs/gaussian_mnist.py')
