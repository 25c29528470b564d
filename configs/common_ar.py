"""The sections every autoregressive-transformer config shares; each experiment file sets the rest."""

import ml_collections

from configs import common


def base(data: ml_collections.ConfigDict, *, num_layers: int, num_heads: int, embed_dim: int,
         mlp_dim: int, warmup_steps: int, timing_samples: int) -> ml_collections.ConfigDict:
    """The config over `data`; the experiment file sets `train` (common.train)."""
    config = ml_collections.ConfigDict()
    config.family = 'autoregressive'
    config.objective = 'nll'
    config.seed = 0
    config.data = data
    config.model = ml_collections.ConfigDict({
        'num_layers': num_layers,
        'num_heads': num_heads,
        'embed_dim': embed_dim,
        'mlp_dim': mlp_dim,
        'conditional': False,       # True: a leading class token
    })
    config.sampler = ml_collections.ConfigDict({'temperature': 1.0})
    config.optimizer = common.optimizer(1e-3, name='adamw', schedule='cosine',
                                        warmup_steps=warmup_steps, grad_clip_norm=1.0)
    config.optimizer.weight_decay = 0.01
    config.eval = common.evaluation(batch_size=100, num_samples=1000)
    # images sampled with and without the key-value cache, for kv_cache_speedup (0: not timed)
    config.eval.timing_samples = timing_samples
    return config


def smoke(config: ml_collections.ConfigDict, arg: str | None, *, batch_size: int,
          timing_samples: int) -> ml_collections.ConfigDict:
    """The autoregressive part of `:smoke`: a one-layer, 16-wide model."""
    if arg == 'smoke':
        config.model.update({'num_layers': 1, 'num_heads': 2, 'embed_dim': 16, 'mlp_dim': 32})
        config.train.batch_size = batch_size
        config.optimizer.warmup_steps = 2
        config.eval.num_samples = 100
        config.eval.timing_samples = timing_samples
    return config
