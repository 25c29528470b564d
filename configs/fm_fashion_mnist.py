"""Flow matching on Fashion-MNIST's 60,000 training images: configs/fm_mnist.py's U-Net, training
and samplers on the full-size dataset, dequantised, in [-1, 1]. FID uses all 10,000 test images
and the Fashion-MNIST classifier's features; the likelihood through the ODE (Hutchinson's
divergence, RK4 over 20 steps: 80 network evaluations with a Jacobian-vector product each) runs
on the first 2,000 test images, with its standard error.

    python train.py --config configs/fm_fashion_mnist.py --workdir workdirs/fm_fashion_mnist
    python train.py --config configs/fm_fashion_mnist.py:smoke --workdir /tmp/fm_fashion_smoke
    python eval.py --workdir workdirs/fm_fashion_mnist --set "eval.samplers=('euler10',)"

The files come from Debian's dataset-fashion-mnist, prepared on first use
(genmodels/data/originals.py).
"""

import ml_collections

from configs import common, common_flow_matching, fm_mnist


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = fm_mnist.get_config()
    config.data.name = 'fashion_mnist'
    config.eval.max_examples = 2000
    config = common.apply_arg(config, arg, 'configs/fm_fashion_mnist.py')
    return common_flow_matching.smoke(config, arg)
