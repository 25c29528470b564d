"""DDPM (Ho et al. 2020) on the bundled MNIST digits in [-1, 1]: linear beta 1e-4 .. 0.02 over
T = 1000, epsilon prediction, L_simple, a small U-Net (28 -> 14 -> 7, attention at 7x7).

    python train.py --config configs/ddpm_mnist.py --workdir workdirs/ddpm_mnist
    python train.py --config configs/ddpm_mnist.py:smoke --workdir /tmp/ddpm_smoke
    python eval.py --workdir workdirs/ddpm_mnist --set sampler.num_steps=100
"""

import ml_collections

from configs import common, common_ddpm


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_ddpm.base('mnist_bundled')
    config = common.apply_arg(config, arg, 'configs/ddpm_mnist.py')
    return common_ddpm.smoke(config, arg)
