"""Sample metrics in the shipped MNIST classifier's feature space, and eval.py end to end."""

import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from configs import vae_mnist
from genmodels import data, metrics, trainer
from genmodels.metrics import classifiers, inception_weights, sample_quality

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST = classifiers.SHIPPED['mnist']


def split(data_dir: str, name: str, num: int | None = None) -> dict[str, np.ndarray]:
    config = ml_collections.ConfigDict(dict(vae_mnist.get_config().data.to_dict(),
                                            data_dir=data_dir, binarize=False))
    return data.load_split(config, name, num)


@pytest.mark.parametrize('name', sorted(classifiers.SHIPPED))
def test_shipped_weights_match_their_sha256_and_load(name):
    shipped = classifiers.SHIPPED[name]
    assert inception_weights.file_sha256(shipped.path) == shipped.sha256
    assert os.path.getsize(shipped.path) < 2_000_000
    features, probs = jax.device_get(classifiers.load_classifier(shipped.path, shipped.sha256)(
        np.zeros((3, 28, 28, 1), np.float32)))
    assert features.shape == (3, 128) and probs.shape == (3, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_tampered_weights_are_a_one_line_error(tmp_path):
    path = tmp_path / 'w.npz'
    weights = bytearray(open(MNIST.path, 'rb').read())
    weights[len(weights) // 2] ^= 1  # one bit of one weight
    path.write_bytes(bytes(weights))
    with pytest.raises(ValueError, match='sha256') as e:
        classifiers.load_classifier(str(path), MNIST.sha256)
    assert '\n' not in str(e.value)


def test_shipped_classifier_accuracy_on_bundled_test_split(data_dir):
    test = split(data_dir, 'test')
    extractor = sample_quality.classifier_extractor('mnist_bundled')
    _, probs = sample_quality.features(extractor, test['image'], 100)
    accuracy = np.mean(probs.argmax(-1) == test['label'])
    assert len(test['label']) == 500 and accuracy > 0.95  # measured: 0.976


def test_real_test_split_against_itself_is_perfect(data_dir):
    extractor = sample_quality.classifier_extractor('mnist_bundled')
    feats, probs = sample_quality.features(extractor, split(data_dir, 'test')['image'], 100)
    stats = metrics.ReferenceStats(*metrics.gaussian_stats(feats), 'mnist_bundled', 'test',
                                   len(feats), extractor.name, extractor.sha256)
    m = sample_quality.sample_metrics(feats, probs, feats, stats)
    assert abs(m['fid']) < 1e-6
    assert m['precision'] == 1.0 and m['recall'] == 1.0
    # The unbiased MMD^2 of a set against itself is slightly negative (its cross term keeps the
    # diagonal k(x, x)); noise scores about 21 here.
    assert -1.0 < m['kid'] < 0
    assert m['inception_score'] > 7  # ten balanced, confidently classified classes: at most 10


def test_noise_scores_far_worse_than_real_images(data_dir):
    extractor = sample_quality.classifier_extractor('mnist_bundled')
    real, _ = sample_quality.features(extractor, split(data_dir, 'test')['image'], 100)
    stats = metrics.ReferenceStats(*metrics.gaussian_stats(real), 'mnist_bundled', 'test',
                                   len(real), extractor.name, extractor.sha256)
    train_images = split(data_dir, 'train', 500)['image']
    noise = np.random.default_rng(0).uniform(size=train_images.shape).astype(np.float32)
    good = sample_quality.sample_metrics(*sample_quality.features(extractor, train_images, 100),
                                         real, stats)
    bad = sample_quality.sample_metrics(*sample_quality.features(extractor, noise, 100), real,
                                        stats)
    assert bad['fid'] > 20 * good['fid'] and bad['kid'] > 20 * abs(good['kid'])
    assert good['precision'] > 0.6 and good['recall'] > 0.6
    assert bad['precision'] < 0.1 and bad['recall'] < 0.05  # measured: 0.04 and 0
    assert bad['inception_score'] < good['inception_score'] / 2


def test_reference_stats_are_cached_reused_and_recomputed_when_stale(tmp_path, data_dir,
                                                                     monkeypatch):
    extractor = sample_quality.classifier_extractor('mnist_bundled')
    d = ml_collections.ConfigDict(dict(vae_mnist.get_config().data.to_dict(), data_dir=data_dir))
    cache = str(tmp_path / 'cache')
    args = (extractor, d, 'test', 500, cache, 100)
    stats, feats = sample_quality.reference(*args, keep_features=True)
    assert sorted(os.listdir(cache)) == [
        f'mnist_bundled-test-500-{extractor.name}-features.npz',
        f'mnist_bundled-test-500-{extractor.name}.npz']

    loads = []
    real_load_split = data.load_split
    monkeypatch.setattr(data, 'load_split', lambda *a: loads.append(a) or real_load_split(*a))
    again, again_feats = sample_quality.reference(*args, keep_features=True)
    assert loads == []  # reused: the real data was not read again
    np.testing.assert_array_equal(again.sigma, stats.sigma)
    np.testing.assert_allclose(again_feats, feats, rtol=1e-6)

    # Statistics made by another extractor (its sha256 differs) are recomputed and replaced.
    path = os.path.join(cache, f'mnist_bundled-test-500-{extractor.name}.npz')
    stale = metrics.ReferenceStats(stats.mu + 1, stats.sigma, 'mnist_bundled', 'test', 500,
                                   extractor.name, 'f' * 64)
    metrics.save_reference_stats(path, stale)
    fresh, _ = sample_quality.reference(*args, keep_features=True)
    assert len(loads) == 1
    np.testing.assert_array_equal(fresh.mu, stats.mu)
    assert metrics.load_reference_stats(path).extractor_sha256 == extractor.sha256


def test_generated_images_are_mapped_to_the_unit_interval():
    config = vae_mnist.get_config()
    x = np.array([-1.0, -0.5, 0.0, 1.0, 1.5], np.float32)
    np.testing.assert_allclose(sample_quality.to_unit(config, x), [0, 0, 0, 1, 1])
    config.data.scale = '-11'
    np.testing.assert_allclose(sample_quality.to_unit(config, x), [0, 0.25, 0.5, 1, 1])


def test_datasets_without_an_extractor_are_skipped_with_a_note():
    config = vae_mnist.get_config()
    config.data.name = 'cifar10'
    out = sample_quality.evaluate_samples(config, None, jax.random.key(0), cache_dir=None)
    assert list(out) == ['sample_metrics_note']
    assert '--inception_weights' in out['sample_metrics_note']


def test_eval_py_writes_sample_metrics_of_a_tiny_vae(tmp_path, data_dir):
    config = vae_mnist.get_config('smoke')
    config.data.data_dir = data_dir
    config.model.hidden = (32,)
    config.model.latent_dim = 4
    config.train.num_steps = 4
    config.train.checkpoint_every = 4
    config.train.figures = False
    config.eval.iwae_k = 2
    config.eval.max_examples = 16
    config.eval.num_samples = 32  # what train_and_evaluate draws
    workdir = str(tmp_path / 'vae')
    assert trainer.train_and_evaluate(config, workdir)['num_samples'] == 32
    out = subprocess.run([sys.executable, 'eval.py', '--workdir', workdir, '--num_samples', '64'],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.load(open(os.path.join(workdir, 'eval.json')))
    assert record['num_samples'] == 64 and record['fid_data_floor_num_images'] == 64
    assert record['feature_extractor_sha256'] == MNIST.sha256
    for key in ('fid_mnist_classifier', 'fid_data_floor', 'kid', 'kid_std', 'inception_score',
                'inception_score_std', 'precision', 'recall'):
        assert np.isfinite(record[key]), key
    assert record['fid_mnist_classifier'] > record['fid_data_floor']  # 4 steps of training
    assert 1 <= record['inception_score'] <= 10 and 0 <= record['precision'] <= 1
    # test stats and features, train stats for 32 (train.py) and 64 (eval.py) samples
    assert len(os.listdir(os.path.join(workdir, 'reference_stats'))) == 4
