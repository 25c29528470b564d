"""DDPM on CIFAR-10 (TFDS `cifar10`, 32x32x3): the recipe of Ho et al. 2020 (Appendix B: U-Net with
channel multipliers (1, 2, 2, 2), two residual blocks per level, attention at 16x16, dropout 0.1,
Adam 2e-4 with 5,000 warm-up steps, gradient clipping at 1, EMA 0.9999) at a small width (64
channels, Ho et al. use 128). Sample metrics need pytorch-fid's Inception weights
(`eval.py --inception_weights PATH`).

    python train.py --config configs/ddpm_cifar10.py --workdir workdirs/ddpm_cifar10 \\
        --config.data.data_dir=PATH   # where `tfds build cifar10` put it
"""

import ml_collections

from configs import common, common_ddpm


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_ddpm.base('cifar10')
    config.model.channels = 64
    config.model.channel_mults = (1, 2, 2, 2)
    config.model.num_res_blocks = 2
    config.model.attention_resolutions = (16,)
    config.model.dropout = 0.1
    config.optimizer = common.optimizer(2e-4, warmup_steps=5000, grad_clip_norm=1.0)
    config.train = common.train(batch_size=128, num_steps=800_000, log_every=1000,
                                checkpoint_every=10_000, ema_rate=0.9999)
    config.train.figures_every = 10_000
    config.eval = common.evaluation(batch_size=250, num_samples=10_000, use_ema=True)
    config.eval.samplers = ('ddim50',)
    config.eval.nll_timesteps = 0
    config.eval.ode_likelihood_solver = ''
    config = common.apply_arg(config, arg, 'configs/ddpm_cifar10.py')
    return common_ddpm.smoke(config, arg)
