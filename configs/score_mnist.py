"""Score matching (NCSN) on the bundled MNIST digits in [0, 1]: a small U-Net conditioned on the
noise level (28 -> 14 -> 7, attention at 7x7), a geometric ladder from 16 (the largest distance
between two training digits) to 0.01, annealed Langevin sampling with a final denoising step.

    python train.py --config configs/score_mnist.py --workdir workdirs/score_mnist
    python train.py --config configs/score_mnist.py:smoke --workdir /tmp/score_mnist_smoke
    python eval.py --workdir workdirs/score_mnist --set sampler.steps_per_level=5
"""

import ml_collections

from configs import common, common_score


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_score.base('mnist_bundled', scale='01')
    config.model.sigma_max = 16.0
    config.model.sigma_min = 0.01
    config.model.num_scales = 100
    config.sampler.step_size = 2e-5
    config.sampler.steps_per_level = 2
    config.eval.loss_levels = 10
    config = common.apply_arg(config, arg, 'configs/score_mnist.py')
    return common_score.smoke(config, arg)
