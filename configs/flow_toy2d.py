"""RealNVP-style coupling flow with MLP nets on the two moons (genmodels/data/toy.py): exact density,
scored against the true one (eval.json's kl_estimate_nats), drawn beside it in density.png.

    python train.py --config configs/flow_toy2d.py --workdir workdirs/flow_toy2d
    python train.py --config configs/flow_toy2d.py:smoke --workdir /tmp/flow_toy2d_smoke
    python train.py --config configs/flow_toy2d.py --workdir workdirs/flow_grid25 \
        --config.data.name=toy_grid_25
"""

import ml_collections

from configs import common, common_flow


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_flow.base(common.data('toy_two_moons', scale='none'), architecture='mlp',
                              hidden=128, num_blocks=1, learning_rate=1e-3)
    config.train = common.train(batch_size=256, num_steps=10_000, log_every=500,
                                checkpoint_every=2500, ema_rate=0.999)
    config.train.figures_every = 2500
    config.eval = common.evaluation(batch_size=1000, num_samples=2500, use_ema=True)
    config = common.apply_arg(config, arg, 'configs/flow_toy2d.py')
    return common_flow.smoke(config, arg, batch_size=64)
