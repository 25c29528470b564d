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
        'conditional': False,       # class embedding + label dropout (classifier-free guidance)
        'source': 'normal',         # N(0, I); or a toy dataset (e.g. toy_eight_gaussians)
        'path': 'linear',           # CondOT / rectified flow; 'cosine': variance preserving
        'time_distribution': 'uniform',  # or 'logit_normal' (Esser et al. 2024)
        'logit_mean': 0.0,
        'logit_std': 1.0,
    })
    config.loss = ml_collections.ConfigDict({
        'ot_method': 'exact',       # objective ot_cfm: 'exact' permutation or 'sinkhorn' plan
        'sinkhorn_reg': 0.05,       # Sinkhorn's regularisation, relative to the mean cost
        'label_dropout': 0.1,       # conditional models: P(label -> "no label") in training
        'reflow_teacher': '',       # objective reflow: the teacher's workdir
        'reflow_pairs': 20_000,     # the pairs its ODE makes, once
        'reflow_solver': 'rk410',   # with this solver
    })
    config.sampler = ml_collections.ConfigDict({
        'name': 'heun20',           # euler50, midpoint25, rk410, dopri5, ...
        'rtol': 1e-5,               # dopri5 only
        'atol': 1e-5,
        'guidance_scale': 1.0,      # classifier-free guidance s (conditional models)
        'spacing': 'uniform',       # fixed-step grids: 'uniform' in t, 'karras', 'logsnr', 'shift3'
    })
    config.optimizer = common.optimizer(1e-3, schedule='cosine', warmup_steps=200)
    config.train = common.train(batch_size=128, num_steps=1000, log_every=100,
                                checkpoint_every=500, ema_rate=0.999)
    config.eval = evaluation(batch_size=250, num_samples=1000)
    return config


def evaluation(*, batch_size: int, num_samples: int, hutchinson: bool = True,
               samplers: tuple = (), w2_samples: int = 0) -> ml_collections.ConfigDict:
    config = common.evaluation(batch_size=batch_size, num_samples=num_samples, use_ema=True)
    config.likelihood_solver = 'rk420'  # the likelihood's ODE solver (fixed-step)
    config.hutchinson = hutchinson      # Hutchinson's divergence estimate, else exact (toys)
    config.samplers = samplers          # sample metrics of each named solver (images)
    config.w2_samples = w2_samples      # toys: the 2-Wasserstein distance of this many samples
    return config


def smoke(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """The flow-matching part of `:smoke`: short ODEs."""
    if arg == 'smoke':
        config.sampler.name = 'euler4'
        config.eval.likelihood_solver = 'euler4'
        config.eval.batch_size = 50
        config.eval.samplers = tuple(n for n in config.eval.samplers if n != 'dopri5')[:1]
        config.eval.w2_samples = min(config.eval.w2_samples, 200)
    return config
