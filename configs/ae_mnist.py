"""The classic 784-512-256-128 MLP autoencoder on the bundled MNIST digits, MSE, Adam 1e-3.

    python train.py --config configs/ae_mnist.py --workdir workdirs/ae_mnist
    python train.py --config configs/ae_mnist.py:smoke --workdir /tmp/ae_smoke
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'autoencoder'
    config.objective = 'mse'
    config.seed = 0
    config.data = common.data('mnist_bundled')
    config.model = ml_collections.ConfigDict({'hidden': (512, 256, 128)})
    config.loss = ml_collections.ConfigDict()
    config.optimizer = common.optimizer(1e-3)
    config.train = common.train(batch_size=128, num_steps=5_000, log_every=100,
                                checkpoint_every=1000)
    config.eval = common.evaluation()
    return common.apply_arg(config, arg, 'configs/ae_mnist.py')
