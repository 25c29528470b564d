"""The sections every DDPM config shares; each experiment file sets the rest."""

import ml_collections

from configs import common


def base(dataset: str, *, scale: str = '-11') -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'ddpm'
    config.objective = 'simple'     # 'simple' (L_simple, Ho Eq. 14) or 'vlb' (the whole bound)
    config.seed = 0
    config.data = common.data(dataset, scale=scale)
    config.model = ml_collections.ConfigDict({
        **common.denoiser_model(),
        'conditional': False,
        'schedule': 'linear',       # Ho et al.: beta from 1e-4 to 0.02 over T = 1000
        'num_timesteps': 1000,
        'beta_start': 1e-4,
        'beta_end': 0.02,
        'prediction': 'eps',
        'zero_terminal_snr': False,  # Lin et al. 2024's rescale (with prediction='v')
    })
    config.loss = ml_collections.ConfigDict({
        'label_dropout': 0.0,
        'min_snr_gamma': 0.0,       # e.g. 5: Hang et al.'s min-SNR-gamma weighting; 0: L_simple
    })
    config.sampler = ml_collections.ConfigDict({
        'name': 'ddim',             # what `sample` uses: FID during training, figures
        'num_steps': 50,
        'eta': 0.0,
        'variance': 'fixed_large',  # ancestral sampling and the likelihood bound
        'guidance_scale': 1.0,
        'clip_denoised': True,
        'spacing': '',              # the sampler's own spread of timesteps (ddpm.CONFIG_SCHEMA)
    })
    # Ho et al. use Adam 2e-4 with 5,000 warm-up steps and gradient clipping at 1 for 800k steps; a
    # run of a few thousand steps needs a larger rate, decayed.
    config.optimizer = common.optimizer(1e-3, schedule='cosine', warmup_steps=200,
                                        grad_clip_norm=1.0)
    # 3,000 steps of batch 128 (85 passes over mnist_bundled's 4,500 training digits): about an
    # hour on 2 CPU cores at 1.1 s per step.
    # EMA 0.995 (a 200-step horizon): with 0.999 the average still held 37% of the initial
    # weights at step 1,000 and sampled noise while the weights themselves drew digits.
    config.train = common.train(batch_size=128, num_steps=3000, log_every=100,
                                checkpoint_every=500, ema_rate=0.995)
    config.train.figures_every = 500
    config.eval = common.evaluation(batch_size=250, num_samples=1000, use_ema=True)
    # DDIM-50 deterministic (eta 0) and stochastic (eta 1: the respaced ancestral chain with the
    # posterior's variance), which at this training length matches ancestral-1000's FID
    config.eval.samplers = ('ancestral1000', 'ddim50', 'ddim50_eta1', 'ddim10')
    config.eval.nll_timesteps = 0   # all T terms of the bound
    config.eval.ode_likelihood_solver = ''  # e.g. rk425: the probability-flow likelihood too
    return config


def smoke(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """The DDPM part of `:smoke`: short chains and a 4-term likelihood estimate."""
    if arg == 'smoke':
        config.sampler.num_steps = 4
        config.eval.samplers = ('ddim4',)
        config.eval.nll_timesteps = 4
        config.eval.batch_size = 100
    return config
