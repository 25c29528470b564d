"""Autoregressive transformer on characters: `tiny_shakespeare` (TFDS, once prepared) or any UTF-8
text file given as data.name=text:<path> (its first 90% trains, the last 10% tests). Each example
is a window of data.sequence_length characters; the test NLL is in nats and bits per character,
and `perplexity` is per character.

    python train.py --config configs/ar_text.py --workdir workdirs/ar_text
    python train.py --config configs/ar_text.py --workdir W --config.data.name=text:corpus.txt
    python train.py --config configs/ar_text.py:smoke --workdir /tmp/ar_text_smoke \\
        --config.data.name=text:README.md
"""

import ml_collections

from configs import common, common_ar


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    data = common.data('tiny_shakespeare')
    data.eval_split = 'test'
    data.sequence_length = 128
    # About 17 GFLOP per step (3 layers of width 128 over 32 x 128 characters): CPU-sized.
    config = common_ar.base(data, num_layers=3, num_heads=4, embed_dim=128, mlp_dim=512,
                            warmup_steps=100, timing_samples=16)
    config.train = common.train(batch_size=32, num_steps=2000, log_every=100,
                                checkpoint_every=1000)
    config.train.figures_every = 1000
    config = common.apply_arg(config, arg, 'configs/ar_text.py')
    config = common_ar.smoke(config, arg, batch_size=8, timing_samples=2)
    if arg == 'smoke':
        config.data.sequence_length = 32
    return config
