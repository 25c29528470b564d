"""The Fashion-MNIST convnet whose features and softmax feed the sample-quality metrics (FID, KID,
IS, precision/recall, label accuracy) of every family trained on Fashion-MNIST.

Trained on the 60,000 training images in [0, 1], with the MNIST classifier's network
(configs/classifier_mnist.py) made wider for the harder data. The shipped weights
(genmodels/metrics/weights/fashion_mnist_classifier.npz) are reproduced by

    python train.py --config configs/classifier_fashion_mnist.py --workdir workdirs/classifier_fashion_mnist
    python -m tools.export_classifier --workdir workdirs/classifier_fashion_mnist \\
        --out genmodels/metrics/weights/fashion_mnist_classifier.npz

and the smoke run is  python train.py --config configs/classifier_fashion_mnist.py:smoke --workdir W
"""

import ml_collections

from configs import classifier_mnist, common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = classifier_mnist.get_config()
    config.data = common.data('fashion_mnist')
    config.model.channels = (64, 128, 64)  # 28 -> 14 -> 7 -> 4; 64 x 4 x 4 = 1,024 features in
    config.train = common.train(batch_size=128, num_steps=8000, log_every=200,
                                checkpoint_every=2000)
    return common.apply_arg(config, arg, 'configs/classifier_fashion_mnist.py')
