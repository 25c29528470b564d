"""The shipped classifiers: the feature extractors of FID/KID/IS/precision-recall and the readers of
label accuracy on MNIST digits and on Fashion-MNIST.

Each is the convnet of genmodels/families/classifier.py, trained by this codebase's own trainer on
its dataset's training images in [0, 1] (configs/classifier_mnist.py on the 4,500 bundled digits,
configs/classifier_fashion_mnist.py on Fashion-MNIST's 60,000; test accuracies:
docs/results/comparison.md). Its penultimate ReLU units are the features, its softmax the class
probabilities of the Inception Score. The weights ship in weights/<name>_classifier.npz (float32,
checked by sha256 on load) and are reproduced, on this CPU, by

    python train.py --config configs/classifier_<name>.py --workdir workdirs/classifier_<name>
    python -m tools.export_classifier --workdir workdirs/classifier_<name> \\
        --out genmodels/metrics/weights/<name>_classifier.npz

The .npz is written byte-for-byte deterministically (sorted entries, fixed zip timestamps), so the
same parameters give the same sha256; another machine's XLA may round differently in training.
"""

from __future__ import annotations

import dataclasses
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

_WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights')


@dataclasses.dataclass(frozen=True)
class Shipped:
    """A shipped classifier: the datasets it reads, its weights file and their sha256."""
    datasets: tuple[str, ...]
    path: str
    sha256: str
    extractor_name: str  # the `extractor` field of reference stats
    key: str             # the FID's key in eval.json is fid_<key>


SHIPPED: dict[str, Shipped] = {
    'mnist': Shipped(('mnist', 'mnist_bundled'), os.path.join(_WEIGHTS_DIR, 'mnist_classifier.npz'),
                     '700ae1cd5583a40e60906c8042531c18152451758f6788d50baaa05ce98a96e4',
                     'genmodels_mnist_classifier_v1', 'mnist_classifier'),
    'fashion_mnist': Shipped(('fashion_mnist',),
                             os.path.join(_WEIGHTS_DIR, 'fashion_mnist_classifier.npz'),
                             'aacf34759012ee6127da77b438f0bfccf7b87cf1cd0060ce7c9c2bded164725b',
                             'genmodels_fashion_mnist_classifier_v1', 'fashion_mnist_classifier'),
}


def for_dataset(name: str) -> Shipped | None:
    """The shipped classifier made for dataset `name`, or None."""
    return next((s for s in SHIPPED.values() if name in s.datasets), None)


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


def load_params(path: str, sha256: str) -> dict:
    """The classifier's params from `path`, after checking the file's sha256."""
    if not os.path.exists(path):
        raise FileNotFoundError(f'classifier weights {path} not found; they ship with genmodels '
                                '(see genmodels/metrics/classifiers.py to rebuild them).')
    digest = file_sha256(path)
    if digest != sha256:
        raise ValueError(f'classifier weights {path} have sha256 {digest}, expected {sha256}; '
                         'restore the shipped file or rebuild it as '
                         'genmodels/metrics/classifiers.py says.')
    with np.load(path, allow_pickle=False) as f:
        flat = {name: f[name] for name in f.files}
    return traverse_util.unflatten_dict(flat, sep='/')


def network_of(params: dict):
    """The ConvNet whose shapes match `params` (widths are read off the kernels)."""
    channels = tuple(params[f'conv_{i}']['kernel'].shape[-1]
                     for i in range(sum(k.startswith('conv_') for k in params)))
    return nets.ConvNet(channels, params['features']['kernel'].shape[1],
                        params['logits']['kernel'].shape[1])


@functools.lru_cache(maxsize=4)
def load_classifier(path: str, sha256: str) -> FeaturesAndProbs:
    """jitted features_and_probs(images [N, H, W, C] in [0, 1]) -> (features [N, F],
    probs [N, classes]), from the weights at `path` checked against `sha256`."""
    params = load_params(path, sha256)
    net = network_of(params)

    @jax.jit
    def apply(p, images):
        features, logits = net.apply({'params': p}, images)
        return features, jax.nn.softmax(logits)

    return functools.partial(apply, params)
