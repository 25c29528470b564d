"""Gaussian KDE on scikit-learn's 8x8 digits in a PCA space: scikit-learn's KDE digits demo, with an
isotropic Gaussian on the discarded directions so the likelihood is a density on all 64 pixels.

    python train.py --config configs/kde_digits.py --workdir workdirs/kde_digits
    python train.py --config configs/kde_digits.py:smoke --workdir /tmp/kde_smoke
    python train.py --config configs/kde_digits.py --workdir workdirs/kde_digits_pixels \
        --config.model.pca_components=0 --config.model.bandwidth=scott
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'kde'
    config.objective = 'kde'
    config.seed = 0
    config.data = common.data('digits', dequantize=True)
    config.model = ml_collections.ConfigDict({
        'pca_components': 15,   # as scikit-learn's demo; 0: the KDE on all 64 pixels
        'bandwidth': 'cv',      # 'scott', 'silverman', 'cv' (held-out likelihood) or a number
        'query_chunk': 1024,
        'point_chunk': 4096,
    })
    config.train = common.fit_train()
    config.eval = common.evaluation()
    if arg == 'smoke':
        config.model.bandwidth = 'scott'
        config.eval.max_examples = 100
        config.eval.num_samples = 500
    elif arg is not None:
        raise ValueError(f'unknown config argument {arg!r}; use configs/kde_digits.py or :smoke.')
    return config
