"""Class-conditional DCGAN on the bundled MNIST digits: label embedding joined to z, projection D.

    python train.py --config configs/cdcgan_mnist.py --workdir workdirs/cdcgan_mnist
    python train.py --config configs/cdcgan_mnist.py:smoke --workdir /tmp/cdcgan_smoke
"""

import ml_collections

from configs import common, common_gan


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_gan.base('mnist_bundled')
    config.model.conditional = True
    return common.apply_arg(config, arg, 'configs/cdcgan_mnist.py')
