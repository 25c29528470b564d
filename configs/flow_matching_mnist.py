"""Flow matching with the DDPM family's U-Net on the bundled MNIST digits in [-1, 1], dequantised:
samples by the ODE (Heun, 20 steps: 40 network evaluations), bits/dim through the change of
variables with Hutchinson's divergence estimate.

    python train.py --config configs/flow_matching_mnist.py --workdir workdirs/fm_mnist
    python train.py --config configs/flow_matching_mnist.py:smoke --workdir /tmp/fm_mnist_smoke
    python eval.py --workdir workdirs/fm_mnist --set sampler.name=euler10
"""

import ml_collections

from configs import common, common_flow_matching


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_flow_matching.base('mnist_bundled', scale='-11', dequantize=True)
    config.train = common.train(batch_size=128, num_steps=20_000, log_every=200,
                                checkpoint_every=2000, ema_rate=0.999)
    config.eval = common.evaluation(batch_size=100, num_samples=1000, use_ema=True)
    config.eval.likelihood_solver = 'rk420'
    config.eval.hutchinson = True
    config = common.apply_arg(config, arg, 'configs/flow_matching_mnist.py')
    return common_flow_matching.smoke(config, arg)
