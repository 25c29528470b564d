"""Autoregressive transformer on the bundled MNIST digits, dynamically binarised: 784 binary tokens
in raster order; its exact NLL compares with the VAE's IWAE bound on the same binarised split.

    python train.py --config configs/ar_mnist.py --workdir workdirs/ar_mnist
    python train.py --config configs/ar_mnist.py:smoke --workdir /tmp/ar_mnist_smoke
    python eval.py --workdir workdirs/ar_mnist --set sampler.temperature=0.9
"""

import ml_collections

from configs import common, common_ar


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    # Attention over 784 positions ([B, heads, 784, 784] per layer) dominates the cost on CPU, so
    # the model is narrow and shallow and the batch small. Recomputing the prefix at each of the
    # 784 sampling steps takes seconds per image, so only 2 images time the cache's speed-up.
    config = common_ar.base(common.data('mnist_bundled', binarize=True), num_layers=2,
                            num_heads=2, embed_dim=64, mlp_dim=256, warmup_steps=100,
                            timing_samples=2)
    config.train = common.train(batch_size=16, num_steps=1200, log_every=100,
                                checkpoint_every=400)
    config = common.apply_arg(config, arg, 'configs/ar_mnist.py')
    return common_ar.smoke(config, arg, batch_size=8, timing_samples=1)
