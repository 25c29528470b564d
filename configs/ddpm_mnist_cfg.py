"""Class-conditional DDPM on the bundled MNIST digits with classifier-free guidance (Ho & Salimans
2022): labels dropped with probability 0.2 in training, guidance scale 3 when sampling (0: the
unconditional model, 1: the conditional one).

    python train.py --config configs/ddpm_mnist_cfg.py --workdir workdirs/ddpm_mnist_cfg
    python eval.py --workdir workdirs/ddpm_mnist_cfg --set sampler.guidance_scale=1
"""

import ml_collections

from configs import common, common_ddpm


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_ddpm.base('mnist_bundled')
    config.model.conditional = True
    config.loss.label_dropout = 0.2
    config.sampler.guidance_scale = 3.0
    config = common.apply_arg(config, arg, 'configs/ddpm_mnist_cfg.py')
    return common_ddpm.smoke(config, arg)
