"""Rectified flow's reflow (Liu et al. 2023) on the bundled MNIST digits: 20,000 pairs of noise and
the sample that a trained flow-matching teacher's ODE (Heun, 25 steps) carries it to, made once
into the workdir, then flow matching on those pairs, whose straighter paths sample in 1-2 steps.

    python train.py --config configs/fm_mnist.py --workdir workdirs/fm_mnist      # the teacher
    python train.py --config configs/rf_mnist.py --workdir workdirs/rf_mnist \\
        --config.loss.reflow_teacher=workdirs/fm_mnist
    python train.py --config configs/rf_mnist.py:smoke --workdir /tmp/rf_mnist_smoke \\
        --config.loss.reflow_teacher=/tmp/fm_mnist_smoke
"""

import ml_collections

from configs import common, fm_mnist


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = fm_mnist.get_config()
    config.objective = 'reflow'
    config.loss.reflow_teacher = 'workdirs/fm_mnist'
    config.loss.reflow_pairs = 20_000
    config.loss.reflow_solver = 'heun25'
    config = common.apply_arg(config, arg, 'configs/rf_mnist.py')
    if arg == 'smoke':
        config.loss.reflow_pairs = 256
        config.loss.reflow_solver = 'euler2'
        config.sampler.name = 'euler4'
        config.eval.likelihood_solver = 'euler4'
        config.eval.batch_size = 50
        config.eval.samplers = ('euler1',)
    return config
