"""The MNIST convnet whose features and softmax feed the sample-quality metrics (FID, KID, IS,
precision/recall) of every family trained on MNIST digits.

Trained on the 4,500 bundled train digits in [0, 1] (no binarisation, no dequantisation). The
shipped weights (genmodels/metrics/weights/mnist_classifier.npz) are reproduced by

    python train.py --config configs/classifier_mnist.py --workdir workdirs/classifier_mnist
    python -m tools.export_mnist_classifier --workdir workdirs/classifier_mnist \\
        --out genmodels/metrics/weights/mnist_classifier.npz

and the smoke run is  python train.py --config configs/classifier_mnist.py:smoke --workdir W
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.family = 'classifier'
    config.objective = 'cross_entropy'
    config.seed = 0
    config.data = common.data('mnist_bundled')
    config.model = ml_collections.ConfigDict({
        'channels': (32, 64, 32),   # 28 -> 14 -> 7 -> 4; 32 x 4 x 4 = 512 inputs to the features
        'features': 128,            # the feature dimension of FID/KID/precision-recall
        'num_classes': 10,
        'dropout': 0.5,             # on the inputs of both dense layers, in training only
    })
    config.loss = ml_collections.ConfigDict()
    config.optimizer = common.optimizer(1e-3, name='adamw', schedule='cosine', warmup_steps=100)
    config.optimizer.weight_decay = 0.05
    config.train = common.train(batch_size=128, num_steps=3000, log_every=100,
                                checkpoint_every=1000)
    config.eval = common.evaluation()
    return common.apply_arg(config, arg, 'configs/classifier_mnist.py')
