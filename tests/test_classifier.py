"""The classifier family under the generic trainer, and the export of its weights."""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import classifier_mnist
from genmodels import config as config_lib, families, trainer
from genmodels.data import bundled
from genmodels.families import classifier
from genmodels.metrics import classifiers, inception_weights
from tools import export_classifier


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> str:
    """A classifier workdir after a smoke run on the bundled MNIST digits."""
    data_dir = str(tmp_path_factory.mktemp('tfds'))
    bundled.prepare('mnist_bundled', data_dir)
    config = classifier_mnist.get_config('smoke')
    config.data.data_dir = data_dir
    config.optimizer.warmup_steps = 0
    config.optimizer.learning_rate = 3e-3
    config.train.num_steps = 30
    workdir = str(tmp_path_factory.mktemp('classifier'))
    trainer.train_and_evaluate(config, workdir)
    return workdir


def test_trains_under_the_generic_trainer(trained):
    losses = [json.loads(line)['loss'] for line in open(os.path.join(trained, 'metrics.jsonl'))]
    assert losses[-1] < losses[0] * 0.7
    record = json.load(open(os.path.join(trained, 'eval.json')))
    assert record['family'] == 'classifier' and record['step'] == 30
    assert record['test_accuracy'] > 0.5 and record['test_cross_entropy_nats'] < 2.0
    assert not any(k.startswith(('fid', 'sample')) for k in record)  # it has no `sample`
    assert os.path.getsize(os.path.join(trained, 'figures', 'confusion.png')) > 1000


def test_export_is_deterministic_and_loads_as_the_extractor(trained, tmp_path):
    out1, out2 = str(tmp_path / 'a.npz'), str(tmp_path / 'b.npz')
    export_classifier.main(['--workdir', trained, '--out', out1])
    export_classifier.main(['--workdir', trained, '--out', out2])
    sha = inception_weights.file_sha256(out1)
    assert sha == inception_weights.file_sha256(out2)

    with ocp.CheckpointManager(os.path.join(trained, 'checkpoints')) as mngr:
        params = mngr.restore(30, args=ocp.args.StandardRestore())['params']
    config = classifier_mnist.get_config()
    x = np.random.default_rng(0).uniform(size=(5, 28, 28, 1)).astype(np.float32)
    want_features, logits = classifier.network(config).apply({'params': params}, x)
    features, probs = classifiers.load_classifier(out1, sha)(x)
    np.testing.assert_allclose(features, want_features, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(probs, jax.nn.softmax(logits), rtol=1e-6, atol=1e-7)


def test_bad_dropout_is_a_config_error():
    config = classifier_mnist.get_config()
    config.model.dropout = 1.0
    with pytest.raises(config_lib.ConfigError, match=r'model.dropout must be in \[0, 1\)'):
        families.validated(config)
