"""Flow matching from N(0, I) to the 25-Gaussian grid (`toy_grid_25`, std 0.05), five seeds in one
program: mode coverage (modes hit, the share of high-quality samples) and the 2-Wasserstein
distance at 1, 2 and 10 Euler steps and adaptive dopri5.

    python train.py --config configs/fm_grid25.py --workdir workdirs/fm_grid25
    python train.py --config configs/fm_grid25.py --workdir workdirs/ot_cfm_grid25 \\
        --config.objective=ot_cfm
    python train.py --config configs/fm_grid25.py:smoke --workdir /tmp/fm_grid25_smoke
"""

import ml_collections

from configs import common, common_flow_matching


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_flow_matching.base('toy_grid_25', scale='none')
    config.model.architecture = 'mlp'
    config.train = common.train(batch_size=256, num_steps=20_000, log_every=500,
                                checkpoint_every=5000, ema_rate=0.999)
    config.train.num_seeds = 5
    config.train.figures_every = 5000
    config.sampler.name = 'euler10'
    config.eval = common_flow_matching.evaluation(
        batch_size=1000, num_samples=10_000, hutchinson=False,
        samplers=('euler1', 'euler2', 'euler10', 'dopri5'), w2_samples=10_000)
    config = common.apply_arg(config, arg, 'configs/fm_grid25.py')
    return common_flow_matching.smoke(config, arg)
