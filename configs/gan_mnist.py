"""MLP GAN on the bundled MNIST digits in [-1, 1].

    python train.py --config configs/gan_mnist.py --workdir workdirs/gan_mnist
    python train.py --config configs/gan_mnist.py:smoke --workdir /tmp/gan_mnist_smoke
"""

import ml_collections

from configs import common, common_gan


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_gan.base('mnist_bundled')
    config.model.architecture = 'mlp'
    config.model.hidden = (256, 512, 1024)
    # R1 (Mescheder et al. 2018): without it G collapsed onto 1s, 7s and 9s; with gamma 10 it
    # covers every digit (results: docs/results/gan.md).
    config.loss.r1_weight = 10.0
    return common.apply_arg(config, arg, 'configs/gan_mnist.py')
