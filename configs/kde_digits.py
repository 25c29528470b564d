"""Gaussian KDE on scikit-learn's 8x8 digits in a PCA space (as scikit-learn's KDE digits demo),
with an isotropic Gaussian on the discarded directions so that it is a density on all 64 pixels.

    python train.py --config configs/kde_digits.py --workdir workdirs/kde_digits
    python train.py --config configs/kde_digits.py:smoke --workdir /tmp/kde_smoke
    python train.py --config configs/kde_digits.py --workdir workdirs/kde_digits_demo \
        --config.model.pca_components=15   # scikit-learn's demo; 0: the KDE on all pixels
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
        'pca_components': 50,   # best of 10..63 on 250 held-out train images (15: 25 nats worse)
        'bandwidth': 'cv',      # 'scott', 'silverman', 'cv' (held-out likelihood) or a number
        'query_chunk': 1024,
        'point_chunk': 4096,
    })
    config.train = common.fit_train()
    config.eval = common.evaluation()
    config = common.apply_arg(config, arg, 'configs/kde_digits.py')
    if arg == 'smoke':
        config.model.bandwidth = 'scott'
    return config
