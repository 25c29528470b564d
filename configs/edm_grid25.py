"""EDM with an MLP denoiser on the 25-Gaussian grid (`toy_grid_25`): mode coverage and the
high-quality fraction of Heun's samples, the probability-flow likelihood beside the true one.

    python train.py --config configs/edm_grid25.py --workdir workdirs/edm_grid25
    python train.py --config configs/edm_grid25.py:smoke --workdir /tmp/edm_grid25_smoke
"""

import ml_collections

from configs import common, common_edm


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common_edm.base('toy_grid_25', scale='none')
    config.model.architecture = 'mlp'
    config.model.hidden = (512, 512, 512, 512)
    # The grid's coordinates run over [-4, 4]: their standard deviation is 2 * sqrt(2).
    config.model.sigma_data = 2.83
    config.optimizer = common.optimizer(1e-3, schedule='cosine', warmup_steps=200)
    config.train = common.train(batch_size=256, num_steps=20_000, log_every=500,
                                checkpoint_every=5000, ema_rate=0.999)
    config.train.figures_every = 5000
    config.eval = common.evaluation(batch_size=1000, num_samples=2500, use_ema=True)
    config.eval.samplers = ()
    config.eval.ode_likelihood_solver = 'rk425'
    config = common.apply_arg(config, arg, 'configs/edm_grid25.py')
    return common_edm.smoke(config, arg)
