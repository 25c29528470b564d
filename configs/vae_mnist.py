"""VAE with a Bernoulli likelihood on the bundled MNIST digits (dynamically binarised), a
VampPrior of 50 pseudo-inputs and AdamW with weight decay 0.1: the recipe chosen on a validation
split cut from the training digits (docs/results/vae.md).
`--config.model.prior=standard --config.optimizer.name=adam` gives the plain N(0, I) VAE.

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
        'prior': 'vamp',            # VampPrior; 'mog' (K learned Gaussians) or 'standard' N(0, I)
        'prior_components': 50,     # K: the VampPrior's pseudo-inputs
        'top_latent_dim': 0,        # > 0: a second stochastic layer above the first
        'top_hidden': (),
    })
    config.loss = ml_collections.ConfigDict({
        'beta': 1.0,
        'kl_warmup_steps': 2000,
        'num_samples': 1,
    })
    config.optimizer = common.optimizer(1e-3, name='adamw', schedule='cosine', warmup_steps=200)
    config.optimizer.weight_decay = 0.1
    config.train = common.train(batch_size=128, num_steps=20_000, log_every=200,
                                checkpoint_every=2000)
    config.eval = common.evaluation(iwae_k=1000)
    return common.apply_arg(config, arg, 'configs/vae_mnist.py')
