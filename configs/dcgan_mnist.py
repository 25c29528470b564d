"""DCGAN (Radford et al. 2016) on the bundled MNIST digits in [-1, 1].

    python train.py --config configs/dcgan_mnist.py --workdir workdirs/dcgan_mnist
    python train.py --config configs/dcgan_mnist.py:smoke --workdir /tmp/dcgan_smoke
"""

import ml_collections

from configs import common, common_gan


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_gan.base('mnist_bundled')
    return common.apply_arg(config, arg, 'configs/dcgan_mnist.py')
