"""Flow matching with an MLP velocity field on two moons (`toy_two_moons`): samples by the ODE, the
exact test NLL through the instantaneous change of variables beside the true density's.

    python train.py --config configs/flow_matching_toy2d.py --workdir workdirs/fm_toy2d
    python train.py --config configs/flow_matching_toy2d.py:smoke --workdir /tmp/fm_toy2d_smoke
    python eval.py --workdir workdirs/fm_toy2d --set sampler.name=dopri5
"""

import ml_collections

from configs import common, common_flow_matching


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_flow_matching.base('toy_two_moons', scale='none')
    config.model.architecture = 'mlp'
    config.train = common.train(batch_size=256, num_steps=20_000, log_every=500,
                                checkpoint_every=5000, ema_rate=0.999)
    config.eval = common.evaluation(batch_size=1000, num_samples=10_000, use_ema=True)
    config.eval.likelihood_solver = 'rk420'
    config.eval.hutchinson = False  # 2 dimensions: the exact divergence
    config = common.apply_arg(config, arg, 'configs/flow_matching_toy2d.py')
    return common_flow_matching.smoke(config, arg)
