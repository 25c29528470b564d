"""Convolutional VAE with a Gaussian likelihood on uniformly dequantised bundled MNIST digits.

    python train.py --config configs/vae_conv_mnist.py --workdir workdirs/vae_conv_mnist
    python train.py --config configs/vae_conv_mnist.py:smoke --workdir /tmp/vae_conv_smoke

The likelihood is a density on [0, 1]-scaled dequantised pixels; eval.json reports it converted to
the discrete 256-level data (genmodels.metrics.units), so it compares with the Bernoulli VAE only in
kind of data, not number: binarised and 256-level MNIST are different datasets.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'vae'
    config.objective = 'elbo'
    config.seed = 0
    config.data = common.data('mnist_bundled', dequantize=True)
    config.model = ml_collections.ConfigDict({
        'architecture': 'conv',
        'hidden': (512, 256),       # unused by the conv architecture
        'channels': (32, 64),       # 28 -> 14 -> 7
        'latent_dim': 32,
        'likelihood': 'gaussian',
        'prior': 'standard',        # or 'mog', 'vamp' (VampPrior): learned mixtures of K
        'prior_components': 0,
        'top_latent_dim': 0,        # > 0: a second stochastic layer above the first
        'top_hidden': (),
    })
    config.loss = ml_collections.ConfigDict({
        'beta': 1.0,
        'kl_warmup_steps': 1000,
        'num_samples': 1,
    })
    config.optimizer = common.optimizer(1e-3, schedule='cosine', warmup_steps=200,
                                        grad_clip_norm=100.0)
    config.train = common.train(batch_size=128, num_steps=10_000, log_every=100,
                                checkpoint_every=1000)
    config.eval = common.evaluation(iwae_k=1000)
    return common.apply_arg(config, arg, 'configs/vae_conv_mnist.py')
