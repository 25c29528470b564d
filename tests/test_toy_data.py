"""Toy datasets (`toy_<name>`, genmodels/data.py) through train.py's and eval.py's path: fixed
splits, continuous likelihoods against the exact density, misspecification cost, bad flags."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from configs import gaussian_1d, gmm_bumps_1d, gmm_toy2d
from genmodels import data, metrics, trainer
from genmodels.data import sources, toy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_toy_is_a_dataset_with_fixed_splits():
    assert {f'toy_{name}' for name in toy.TOYS} <= set(data.known_datasets())
    config = gmm_toy2d.get_config().data
    info = data.dataset_info(config)
    assert (info.shape, info.num_classes) == ((2, 1, 1), 1)
    assert info.num_examples == {'train': 20_000, 'test': 10_000}
    first = data.load_split(config, 'train')
    sources._toy_points.cache_clear()  # draw again: the splits come from fixed seeds, not a cache
    again = data.load_split(config, 'train')
    np.testing.assert_array_equal(first['image'], again['image'])
    assert first['image'].shape == (20_000, 2, 1, 1) and first['image'].dtype == np.float32
    assert not np.any(first['label'])
    test = data.load_split(config, 'test', 50)['image']
    assert test.shape == (50, 2, 1, 1) and not np.isin(test, first['image']).all()
    batch = next(data.train_iterator(config, 64, seed=0))
    assert batch['image'].shape == (64, 2, 1, 1)
    assert np.isin(batch['image'][:, 0, 0, 0], first['image'][:, 0, 0, 0]).all()  # values as is


def test_gmm_toy2d_smoke_scores_against_the_exact_density(tmp_path):
    config = gmm_toy2d.get_config('smoke')
    config.eval.max_examples = 5000  # the KL estimate's standard error shrinks as 1 / sqrt(N)
    workdir = str(tmp_path / 'run')
    result = trainer.train_and_evaluate(config, workdir)
    assert json.load(open(os.path.join(workdir, 'eval.json'))) == result
    assert result['data_num_levels'] == 0 and 'data_scale_min' not in result
    assert np.isfinite(result['nll_nats']) and np.isfinite(result['true_nll_nats'])
    assert result['kl_estimate_nats'] == pytest.approx(result['nll_nats'] - result['true_nll_nats'])
    assert 0.0 < result['kl_estimate_nats'] < 0.1
    assert 'sample_metrics_note' in result
    assert sorted(os.listdir(os.path.join(workdir, 'figures'))) == [
        'density.png', 'ellipses.png', 'em_log_likelihood.png']


def test_two_gaussians_pay_for_three_bumps(tmp_path):
    kl = {}
    for k in (2, 3):
        config = gmm_bumps_1d.get_config()
        config.model.n_components = k
        config.train.figures = k == 2
        kl[k] = trainer.train_and_evaluate(config, str(tmp_path / f'k{k}'))['kl_estimate_nats']
    # The right family costs O(parameters / N) nats; two bumps merged into one Gaussian, ~0.17.
    assert abs(kl[3]) < 0.01
    assert kl[2] > kl[3] + 0.1
    figures = sorted(os.listdir(tmp_path / 'k2' / 'figures'))
    assert figures == ['density.png', 'em_log_likelihood.png']


def test_gaussian_1d_likelihood_equals_scipy(tmp_path):
    config = gaussian_1d.get_config('smoke')
    config.train.figures = False
    result = trainer.train_and_evaluate(config, str(tmp_path / 'run'))
    train = data.load_split(config.data, 'train')['image'].ravel().astype(np.float64)
    test = data.load_split(config.data, 'test', 100)['image'].ravel()
    nll = -np.mean(stats.norm(train.mean(), train.std()).logpdf(test))  # MLE: biased std
    assert result['nll_nats'] == pytest.approx(nll, rel=1e-5)
    true_nll = -np.mean(toy.get('bumps_1d').log_prob(test))
    assert result['true_nll_nats'] == pytest.approx(float(true_nll), rel=1e-6)


@pytest.mark.parametrize('key,value', [('dequantize', True), ('binarize', True), ('scale', '01')])
def test_image_preprocessing_on_toy_data_is_an_error_before_the_workdir(tmp_path, key, value):
    config = gmm_toy2d.get_config('smoke')
    config.data[key] = value
    with pytest.raises(ValueError, match="toy_two_moons holds continuous points.*scale='none'"
                       ) as error:
        trainer.train_and_evaluate(config, str(tmp_path / 'w'))
    assert '\n' not in str(error.value)
    assert not os.path.exists(tmp_path / 'w')


def test_train_py_reports_bad_toy_flags_in_one_line(tmp_path):
    workdir = str(tmp_path / 'w')
    out = subprocess.run([sys.executable, 'train.py', '--config', 'configs/gmm_toy2d.py:smoke',
                          '--workdir', workdir, '--config.data.dequantize=True'],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1].startswith('error: toy_two_moons holds continuous')
    assert not os.path.exists(workdir)


def test_unscaled_data_are_continuous_only():
    config = gmm_toy2d.get_config().data
    config.name = 'digits'
    with pytest.raises(ValueError, match="'none' is for toy data"):
        data.dataset_info(config)
    with pytest.raises(ValueError, match='only continuous data may leave out its interval'):
        metrics.Preprocessing('dequantized', low=None, high=None)
