"""EDM (Karras et al. 2022) on the bundled MNIST digits in [-1, 1]: the DDPM configs' small U-Net
(28 -> 14 -> 7, attention at 7x7) as EDM's preconditioned denoiser, trained on ddpm_mnist's budget
(3,000 steps of batch 128, EMA 0.995) so the two compare at equal training steps; FID of Heun
and Euler samplers at several NFE.

    python train.py --config configs/edm_mnist.py --workdir workdirs/edm_mnist
    python train.py --config configs/edm_mnist.py:smoke --workdir /tmp/edm_mnist_smoke
    python eval.py --workdir workdirs/edm_mnist --set "eval.samplers=('heun5','heun10')"
"""

import ml_collections

from configs import common, common_edm


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_edm.base('mnist_bundled')
    # NFE 35 (EDM's default), 19, 9 and Euler at 35
    config.eval.samplers = ('heun18', 'heun10', 'heun5', 'euler35')
    config = common.apply_arg(config, arg, 'configs/edm_mnist.py')
    return common_edm.smoke(config, arg)
