"""The sections every flow-matching config shares; each experiment file sets the rest."""

import ml_collections

from configs import common


def base(dataset: str, *, scale: str, dequantize: bool = False) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'flow_matching'
    config.objective = 'cfm'        # conditional flow matching, independent coupling
    config.seed = 0
    config.data = common.data(dataset, scale=scale, dequantize=dequantize)
    config.model = ml_collections.ConfigDict({
        **common.denoiser_model(),
        'path': 'linear',           # CondOT / rectified flow; 'cosine': variance preserving
        'time_distribution': 'uniform',  # or 'logit_normal' (Esser et al. 2024)
        'logit_mean': 0.0,
        'logit_std': 1.0,
    })
    config.sampler = ml_collections.ConfigDict({
        'name': 'heun20',           # euler50, midpoint25, rk410, dopri5, ...
        'rtol': 1e-5,               # dopri5 only
        'atol': 1e-5,
    })
    config.optimizer = common.optimizer(1e-3, schedule='cosine', warmup_steps=200)
    config.train = common.train(batch_size=128, num_steps=1000, log_every=100,
                                checkpoint_every=500, ema_rate=0.999)
    config.eval = common.evaluation(batch_size=250, num_samples=1000, use_ema=True)
    config.eval.likelihood_solver = 'rk420'
    config.eval.hutchinson = True
    return config


def smoke(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """The flow-matching part of `:smoke`: short ODEs."""
    if arg == 'smoke':
        config.sampler.name = 'euler4'
        config.eval.likelihood_solver = 'euler4'
        config.eval.batch_size = 50
    return config
