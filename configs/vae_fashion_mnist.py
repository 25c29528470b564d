"""VAE on Fashion-MNIST's 60,000 training images under a discretised Gaussian likelihood: the
decoder gives each pixel a mean and a scale, and the bound is on the 8-bit pixels themselves
(bits/dim, no dequantisation).

    python train.py --config configs/vae_fashion_mnist.py --workdir workdirs/vae_fashion_mnist
    python train.py --config configs/vae_fashion_mnist.py:smoke --workdir /tmp/vae_fashion_smoke

The files come from Debian's dataset-fashion-mnist, prepared on first use
(genmodels/data/originals.py). The network and schedule are configs/vae_mnist.py's, with the
N(0, I) prior and Adam its results were measured with (docs/results/fashion_mnist.md). The Gaussian
likelihood with one learned scale per pixel over dequantised pixels
(--config.model.likelihood=gaussian --config.data.dequantize=True) measured 6.54 bits/dim, worse
than one full-covariance Gaussian (docs/results/fashion_mnist.md).
"""

import ml_collections

from configs import common, vae_mnist


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = vae_mnist.get_config()
    config.data = common.data('fashion_mnist')
    config.model.likelihood = 'discretized_gaussian'
    config.model.prior, config.model.prior_components = 'standard', 0
    config.optimizer.name, config.optimizer.weight_decay = 'adam', 0.0
    return common.apply_arg(config, arg, 'configs/vae_fashion_mnist.py')
