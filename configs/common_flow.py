"""The sections every flow config shares; each experiment file sets the rest."""

import ml_collections

from configs import common


def base(data: ml_collections.ConfigDict, *, architecture: str, hidden: int, num_blocks: int,
         learning_rate: float) -> ml_collections.ConfigDict:
    """The config over `data`; the experiment file sets `train` (common.train) and the eval
    section."""
    config = ml_collections.ConfigDict()
    config.family = 'flow'
    config.objective = 'mle'
    config.seed = 0
    config.data = data
    config.model = ml_collections.ConfigDict({
        'architecture': architecture,  # 'realnvp' (images) or 'mlp' (toy points)
        'num_scales': 3,            # realnvp: 28 -> 14 -> 7
        'num_couplings': 8,         # mlp only
        'hidden': hidden,
        'num_blocks': num_blocks,
        'actnorm': True,
        'invertible_1x1': True,
        'logit_alpha': 0.05,        # RealNVP's a on CIFAR-10 (Dinh et al. 2017, Sec. 4.1)
    })
    config.sampler = ml_collections.ConfigDict({'temperature': 1.0})
    config.optimizer = common.optimizer(learning_rate, schedule='cosine', warmup_steps=200,
                                        grad_clip_norm=100.0)
    return config


def smoke(config: ml_collections.ConfigDict, arg: str | None, *, batch_size: int
          ) -> ml_collections.ConfigDict:
    """The flow part of `:smoke`: narrow nets, two scales."""
    if arg == 'smoke':
        config.model.update({'hidden': 8, 'num_blocks': 1, 'num_scales': 2, 'num_couplings': 4})
        config.train.batch_size = batch_size
        config.optimizer.warmup_steps = 2
        config.eval.num_samples = 100
    return config
