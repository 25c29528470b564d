"""Image classifier: a small convnet trained by cross-entropy. Its main use is the MNIST feature
extractor of the sample-quality metrics (genmodels/metrics/classifiers.py): the 128 ReLU
units before the logits are the features of FID/KID/precision-recall, its softmax feeds the IS.

    3x3 stride-2 convs with ReLU (28 -> 14 -> 7 -> 4) -> dense `features` + ReLU -> dense logits

It follows the family contract without `sample` or `log_likelihood`: it is not generative, and the
trainer and evaluation call only `init`, `train_step`, `evaluate` and `figures`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

from genmodels import config as config_lib, data as data_lib
from genmodels.config import ConfigError
from genmodels.nn import nets
from genmodels.training import train_state

matplotlib.use('Agg')  # No display on training machines.
import matplotlib.pyplot as plt  # noqa: E402

CONFIG_SCHEMA = {
    'model': {
        'channels': tuple,   # channels of the 3x3 stride-2 convs, one per halving of the image
        'features': int,     # width of the penultimate ReLU layer: the extractor's features
        'num_classes': int,
        'dropout': float,    # drop rate on the inputs of both dense layers, in training only
    },
    'loss': {},
}


def check_config(config) -> None:
    m = config.model
    if len(m.channels) < 1 or min(m.channels) < 1 or m.features < 1 or m.num_classes < 2:
        raise ConfigError('model.channels must list at least one positive width, model.features '
                          f'must be >= 1 and model.num_classes >= 2; got {m.to_dict()}.')
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f'model.dropout must be in [0, 1), got {m.dropout}.')


def network(config) -> nets.ConvNet:
    m = config.model
    return nets.ConvNet(tuple(m.channels), m.features, m.num_classes, m.dropout)


def cross_entropy(config, params, batch, rng: jax.Array | None = None
                  ) -> tuple[jax.Array, jax.Array]:
    """Per-example -log p(y | x) in nats [B], and the logits [B, K]; dropout if given `rng`."""
    _, logits = network(config).apply({'params': params}, batch['image'], train=rng is not None,
                                      rngs={'dropout': rng} if rng is not None else {})
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']), logits


OBJECTIVES = {'cross_entropy': cross_entropy}


def init(config, rng: jax.Array, example_batch) -> dict:
    params = network(config).init(rng, jnp.asarray(example_batch['image'][:1]))['params']
    return train_state.create(config, params)


def train_step(config, state, batch, rng):
    def loss_fn(params, batch):
        objective = config_lib.objective(OBJECTIVES, config.objective)
        nll, logits = objective(config, params, batch, rng)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
        return jnp.mean(nll), ({'accuracy': accuracy}, {}, None)

    (loss, (means, _, _)), grads = train_state.value_and_grad(config, loss_fn, state['params'],
                                                             batch)
    new_state, grad_norm = train_state.apply_gradients(config, state, grads)
    return new_state, {'loss': loss, **means, 'grad_norm': grad_norm}


def predict(config, params, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Logits [N, K] of images [N, H, W, C], batch by batch."""
    fn = jax.jit(lambda p, x: network(config).apply({'params': p}, x)[1])
    return data_lib.map_batches(lambda b: fn(params, b['image']), {'image': images}, batch_size)


def evaluate(config, params, data, rng) -> dict[str, float]:
    """Test accuracy and cross-entropy (nats per example)."""
    logits = predict(config, params, data['image'], config.eval.batch_size)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, data['label'])
    return {'test_accuracy': float(np.mean(logits.argmax(-1) == data['label'])),
            'test_cross_entropy_nats': float(np.mean(nll))}


def figures(config, params, data, rng, out_dir: str) -> list[str]:
    """The test confusion matrix (rows: true class, columns: predicted class)."""
    k = config.model.num_classes
    predicted = predict(config, params, data['image'], config.eval.batch_size).argmax(-1)
    counts = np.zeros((k, k), np.int64)
    np.add.at(counts, (data['label'], predicted), 1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(counts, cmap='Blues')
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, str(n), ha='center', va='center', fontsize=7)
    ax.set(xlabel='predicted', ylabel='true', xticks=range(k), yticks=range(k),
           title=f'test accuracy {np.trace(counts) / counts.sum():.4f}')
    path = f'{out_dir}/confusion.png'
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)
    return [path]
