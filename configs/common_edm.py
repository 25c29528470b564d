"""The sections every EDM config shares; each experiment file sets the rest."""

import ml_collections

from configs import common


def base(dataset: str, *, scale: str = '-11') -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'edm'
    config.objective = 'edm'        # lambda(sigma) || D(x + sigma n; sigma) - x ||^2
    config.seed = 0
    config.data = common.data(dataset, scale=scale)
    # Karras et al. 2022's values (Table 1): sigma_data 0.5 for images in [-1, 1], levels from
    # 0.002 to 80, ln sigma ~ N(-1.2, 1.2^2) in training, rho = 7, Heun over 18 levels (35 NFE).
    config.model = ml_collections.ConfigDict({
        **common.denoiser_model(),
        'sigma_data': 0.5,
        'sigma_min': 0.002,
        'sigma_max': 80.0,
    })
    config.loss = ml_collections.ConfigDict({'p_mean': -1.2, 'p_std': 1.2})
    config.sampler = ml_collections.ConfigDict({
        'name': 'heun',
        'num_steps': 18,
        'rho': 7.0,
        'churn': 0.0,               # S_churn; 0: the deterministic sampler
        's_tmin': 0.0,
        's_tmax': 1e9,
        's_noise': 1.0,
    })
    config.optimizer = common.optimizer(1e-3, schedule='cosine', warmup_steps=200,
                                        grad_clip_norm=1.0)
    config.train = common.train(batch_size=128, num_steps=3000, log_every=100,
                                checkpoint_every=500, ema_rate=0.995)
    config.train.figures_every = 500
    config.eval = common.evaluation(batch_size=250, num_samples=1000, use_ema=True)
    config.eval.samplers = ('heun18',)
    config.eval.ode_likelihood_solver = ''  # e.g. rk425: the probability-flow likelihood
    return config


def smoke(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """The EDM part of `:smoke`: four levels."""
    if arg == 'smoke':
        config.sampler.num_steps = 4
        config.eval.samplers = ('heun3',)
        config.eval.batch_size = 100
    return config
