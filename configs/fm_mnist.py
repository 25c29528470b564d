"""Flow matching with the DDPM family's U-Net on the bundled MNIST digits in [-1, 1], dequantised:
samples by the ODE (Heun, 20 steps: 40 network evaluations), FID against NFE for the solvers of
eval.samplers, bits/dim through the change of variables with Hutchinson's divergence estimate.

    python train.py --config configs/fm_mnist.py --workdir workdirs/fm_mnist
    python train.py --config configs/fm_mnist.py --workdir workdirs/ot_cfm_mnist \\
        --config.objective=ot_cfm
    python train.py --config configs/fm_mnist.py:smoke --workdir /tmp/fm_mnist_smoke
    python eval.py --workdir workdirs/fm_mnist --set sampler.name=euler10
"""

import ml_collections

from configs import common, common_flow_matching


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_flow_matching.base('mnist_bundled', scale='-11', dequantize=True)
    # The training of configs/ddpm_mnist.py, so the two compare at equal cost: 3,000 steps of batch
    # 128, Adam 1e-3 cosine-decayed after 200 warm-up steps, gradient clipped at 1, EMA 0.995.
    config.optimizer.grad_clip_norm = 1.0
    config.train = common.train(batch_size=128, num_steps=3000, log_every=100,
                                checkpoint_every=500, ema_rate=0.995)
    config.train.figures_every = 500
    # NFE 1, 2, 5, 10, 20, 50 and adaptive.
    config.eval = common_flow_matching.evaluation(
        batch_size=100, num_samples=1000,
        samplers=('euler1', 'euler2', 'euler5', 'euler10', 'heun10', 'heun25', 'dopri5'))
    config = common.apply_arg(config, arg, 'configs/fm_mnist.py')
    return common_flow_matching.smoke(config, arg)
