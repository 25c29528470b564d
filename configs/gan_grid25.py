"""MLP GAN on the 25-Gaussian grid (`toy_grid_25`): the mode-coverage benchmark.

    python train.py --config configs/gan_grid25.py --workdir workdirs/gan_grid25
    python train.py --config configs/gan_grid25.py:smoke --workdir /tmp/gan_grid25_smoke
    python train.py --config configs/gan_grid25.py --workdir W --config.train.num_seeds=5
"""

import ml_collections

from configs import common, common_gan


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_gan.base('toy_grid_25', scale='none')
    config.objective = 'non_saturating'
    config.model.architecture = 'mlp'
    config.model.latent_dim = 2
    config.model.hidden = (256, 256, 256)
    config.optimizer = common.optimizer(1e-4, name='adam')
    config.optimizer.b1, config.optimizer.b2 = 0.5, 0.9
    config.disc_optimizer = common.optimizer(1e-4, name='adam')
    config.disc_optimizer.b1, config.disc_optimizer.b2 = 0.5, 0.9
    config.train = common.train(batch_size=256, num_steps=20_000, log_every=500,
                                checkpoint_every=5000, ema_rate=0.999)
    config.eval = common.evaluation(batch_size=500, num_samples=2500, use_ema=True)
    return common.apply_arg(config, arg, 'configs/gan_grid25.py')
