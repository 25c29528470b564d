"""The shipped MNIST classifier: the feature extractor of FID/KID/IS/precision-recall on digits.

The convnet of genmodels/families/classifier.py (configs/classifier_mnist.py), trained by this
codebase's own trainer on the 4,500 bundled MNIST train digits in [0, 1] (its test accuracy:
docs/results/comparison.md). Its 128 penultimate ReLU units are the features, its softmax the class
probabilities of the Inception Score. The weights ship in weights/mnist_classifier.npz (float32,
checked by sha256 on load) and are reproduced, on this CPU, by

    python train.py --config configs/classifier_mnist.py --workdir workdirs/classifier_mnist
    python -m tools.export_mnist_classifier --workdir workdirs/classifier_mnist \\
        --out genmodels/metrics/weights/mnist_classifier.npz

The .npz is written byte-for-byte deterministically (sorted entries, fixed zip timestamps), so the
same parameters give the same sha256; another machine's XLA may round differently in training.
"""

from __future__ import annotations

import functools
import io
import os
import zipfile
from typing import Callable

import jax
import numpy as np
from flax import traverse_util

from genmodels.metrics.inception_weights import file_sha256
from genmodels.nn import nets

WEIGHTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights',
                            'mnist_classifier.npz')
WEIGHTS_SHA256 = '700ae1cd5583a40e60906c8042531c18152451758f6788d50baaa05ce98a96e4'
EXTRACTOR_NAME = 'genmodels_mnist_classifier_v1'  # the `extractor` field of reference stats

FeaturesAndProbs = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def save_params(path: str, params) -> str:
    """Writes params (a nested dict of arrays) as float32 .npz with '/'-joined names; returns the
    file's sha256. Fixed entry order and timestamps make the bytes a function of the values."""
    flat = traverse_util.flatten_dict(jax.device_get(params), sep='/')
    tmp = f'{path}.tmp'
    with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_STORED) as z:
        for name in sorted(flat):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(flat[name], np.float32), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f'{name}.npy', date_time=(1980, 1, 1, 0, 0, 0)),
                       buf.getvalue())
    os.replace(tmp, path)
    return file_sha256(path)


def load_params(path: str = WEIGHTS_PATH, sha256: str = WEIGHTS_SHA256) -> dict:
    """The classifier's params from `path`, after checking the file's sha256."""
    if not os.path.exists(path):
        raise FileNotFoundError(f'MNIST classifier weights {path} not found; they ship with '
                                'genmodels (see genmodels/metrics/mnist_classifier.py to rebuild).')
    digest = file_sha256(path)
    if digest != sha256:
        raise ValueError(f'MNIST classifier weights {path} have sha256 {digest}, expected '
                         f'{sha256}; restore the shipped file or rebuild it as '
                         'genmodels/metrics/mnist_classifier.py says.')
    with np.load(path, allow_pickle=False) as f:
        flat = {name: f[name] for name in f.files}
    return traverse_util.unflatten_dict(flat, sep='/')


def network_of(params: dict):
    """The ConvNet whose shapes match `params` (widths are read off the kernels)."""
    channels = tuple(params[f'conv_{i}']['kernel'].shape[-1]
                     for i in range(sum(k.startswith('conv_') for k in params)))
    return nets.ConvNet(channels, params['features']['kernel'].shape[1],
                        params['logits']['kernel'].shape[1])


@functools.lru_cache(maxsize=2)
def load_mnist_classifier(path: str = WEIGHTS_PATH, sha256: str = WEIGHTS_SHA256
                          ) -> FeaturesAndProbs:
    """jitted features_and_probs(images [N, 28, 28, 1] in [0, 1]) -> (features [N, 128],
    probs [N, 10]), from the weights at `path` checked against `sha256`."""
    params = load_params(path, sha256)
    net = network_of(params)

    @jax.jit
    def apply(p, images):
        features, logits = net.apply({'params': p}, images)
        return features, jax.nn.softmax(logits)

    return functools.partial(apply, params)
