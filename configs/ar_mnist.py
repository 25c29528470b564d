"""Autoregressive transformer on the bundled MNIST digits, dynamically binarised: 784 binary tokens
in raster order; its exact NLL compares with the VAE's IWAE bound on the same binarised split.

    python train.py --config configs/ar_mnist.py --workdir workdirs/ar_mnist
    python train.py --config configs/ar_mnist.py:smoke --workdir /tmp/ar_mnist_smoke
    python eval.py --workdir workdirs/ar_mnist --set sampler.temperature=0.9
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'autoregressive'
    config.objective = 'nll'
    config.seed = 0
    config.data = common.data('mnist_bundled', binarize=True)
    # Attention over 784 positions ([B, heads, 784, 784] per layer) dominates the cost on CPU, so
    # the model is narrow and shallow and the batch small.
    config.model = ml_collections.ConfigDict({
        'num_layers': 2,
        'num_heads': 2,
        'embed_dim': 64,
        'mlp_dim': 256,
        'conditional': False,       # True: a leading class token
    })
    config.sampler = ml_collections.ConfigDict({'temperature': 1.0})
    config.optimizer = common.optimizer(1e-3, name='adamw', schedule='cosine', warmup_steps=100,
                                        grad_clip_norm=1.0)
    config.optimizer.weight_decay = 0.01
    config.train = common.train(batch_size=16, num_steps=1200, log_every=100,
                                checkpoint_every=400)
    config.eval = common.evaluation(batch_size=100, num_samples=1000)
    # Sampled with and without the cache (kv_cache_speedup); recomputing the prefix at each of
    # the 784 steps takes seconds per image.
    config.eval.timing_samples = 2
    config = common.apply_arg(config, arg, 'configs/ar_mnist.py')
    if arg == 'smoke':
        config.model.update({'num_layers': 1, 'num_heads': 2, 'embed_dim': 16, 'mlp_dim': 32})
        config.train.batch_size = 8
        config.optimizer.warmup_steps = 2
        config.eval.num_samples = 100
        config.eval.timing_samples = 1
    return config
