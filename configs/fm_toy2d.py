"""Flow matching between two 2D distributions, TorchCFM's benchmark: 8 Gaussians
(`toy_eight_gaussians`) to two moons (`toy_moons_cfm`), an MLP velocity field. Evaluated by the
exact 2-Wasserstein distance of 10,000 samples to the target at 1, 2 and 10 Euler steps and
adaptive dopri5, the exact NLL through the change of variables beside the true density's, and the
trajectories' figure.

    python train.py --config configs/fm_toy2d.py --workdir workdirs/fm_toy2d                # CFM
    python train.py --config configs/fm_toy2d.py --workdir workdirs/ot_cfm_toy2d \\
        --config.objective=ot_cfm                                                         # OT-CFM
    python train.py --config configs/fm_toy2d.py --workdir workdirs/fm_normal_moons \\
        --config.model.source=normal                                                   # N(0, I)
    python train.py --config configs/fm_toy2d.py:smoke --workdir /tmp/fm_toy2d_smoke
    python eval.py --workdir workdirs/fm_toy2d --set sampler.name=dopri5
"""

import ml_collections

from configs import common, common_flow_matching


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_flow_matching.base('toy_moons_cfm', scale='none')
    config.model.source = 'toy_eight_gaussians'
    config.model.architecture = 'mlp'
    config.train = common.train(batch_size=256, num_steps=20_000, log_every=500,
                                checkpoint_every=5000, ema_rate=0.999)
    config.train.figures_every = 5000
    config.sampler.name = 'euler10'
    config.eval = common_flow_matching.evaluation(
        batch_size=1000, num_samples=10_000, hutchinson=False,  # 2 dimensions: exact divergence
        samplers=('euler1', 'euler2', 'euler10', 'dopri5'), w2_samples=10_000)
    config = common.apply_arg(config, arg, 'configs/fm_toy2d.py')
    return common_flow_matching.smoke(config, arg)
