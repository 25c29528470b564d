"""VAE with a Bernoulli likelihood on the bundled MNIST digits (dynamically binarised).

    python train.py --config configs/vae_mnist.py --workdir workdirs/vae_mnist
    python train.py --config configs/vae_mnist.py:smoke --workdir /tmp/vae_smoke
    python train.py --config configs/vae_mnist.py --config.objective=iwae --config.loss.num_samples=5 ...
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'vae'
    config.objective = 'elbo'       # 'elbo' or 'iwae'
    config.seed = 0
    config.data = common.data('mnist_bundled', binarize=True)
    config.model = ml_collections.ConfigDict({
        'architecture': 'mlp',      # 'mlp' or 'conv'
        'hidden': (512, 256),
        'channels': (32, 64),
        'latent_dim': 32,
        'likelihood': 'bernoulli',
        'prior': 'standard',        # or 'mog', 'vamp' (VampPrior): learned mixtures of K
        'prior_components': 0,
        'top_latent_dim': 0,        # > 0: a second stochastic layer above the first
        'top_hidden': (),
    })
    config.loss = ml_collections.ConfigDict({
        'beta': 1.0,
        'kl_warmup_steps': 2000,
        'num_samples': 1,
    })
    config.optimizer = common.optimizer(1e-3, schedule='cosine', warmup_steps=200)
    config.train = common.train(batch_size=128, num_steps=20_000, log_every=200,
                                checkpoint_every=2000)
    config.eval = common.evaluation(iwae_k=1000)
    return common.apply_arg(config, arg, 'configs/vae_mnist.py')
