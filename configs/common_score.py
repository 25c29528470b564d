"""The sections every score-matching config shares; each experiment file sets the rest."""

import ml_collections

from configs import common


def base(dataset: str, *, scale: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'score'
    config.objective = 'dsm'        # denoising score matching, lambda(sigma) = sigma^2
    config.seed = 0
    config.data = common.data(dataset, scale=scale)
    config.model = ml_collections.ConfigDict({
        **common.denoiser_model(),
        'sigma_max': 1.0,           # NCSNv2: about the largest distance between two data points
        'sigma_min': 0.01,
        'num_scales': 10,
    })
    config.sampler = ml_collections.ConfigDict({
        'step_size': 2e-5,          # eps of Song & Ermon 2019 (with T = 100, L = 10)
        'steps_per_level': 100,
        'denoise': True,
        'ode_solver': '',           # '': annealed Langevin; e.g. heun50: the probability-flow ODE
    })
    # No clipping: the loss sums over dimensions (392 for an untrained MNIST model), so a fixed
    # norm threshold would clip every step; Adam's step does not depend on the gradient's scale.
    config.optimizer = common.optimizer(1e-3, schedule='cosine', warmup_steps=200)
    config.train = common.train(batch_size=128, num_steps=1000, log_every=100,
                                checkpoint_every=500, ema_rate=0.999)
    config.eval = common.evaluation(batch_size=250, num_samples=1000, use_ema=True)
    config.eval.loss_levels = 0     # the test DSM loss at every level
    config.eval.ode_likelihood_solver = ''  # e.g. rk425: the probability-flow likelihood
    return config


def smoke(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """The score part of `:smoke`: a short ladder and chain, the test loss at 4 levels."""
    if arg == 'smoke':
        config.model.num_scales = 8
        config.sampler.steps_per_level = 2
        config.eval.loss_levels = 4
        config.eval.batch_size = 100
    return config
