"""VAE on Fashion-MNIST's 60,000 training images: uniformly dequantised pixels under a Gaussian
likelihood with a learned per-pixel scale, so its bound is in bits/dim of the 8-bit images.

    python train.py --config configs/vae_fashion_mnist.py --workdir workdirs/vae_fashion_mnist
    python train.py --config configs/vae_fashion_mnist.py:smoke --workdir /tmp/vae_fashion_smoke

The files come from Debian's dataset-fashion-mnist, prepared on first use
(genmodels/data/originals.py). The network and schedule are configs/vae_mnist.py's.
"""

import ml_collections

from configs import common, vae_mnist


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = vae_mnist.get_config()
    config.data = common.data('fashion_mnist', dequantize=True)
    config.model.likelihood = 'gaussian'
    return common.apply_arg(config, arg, 'configs/vae_fashion_mnist.py')
