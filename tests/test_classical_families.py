"""The classical (fit) families through train.py's and eval.py's path: outputs, no refit on rerun,
likelihoods against SciPy, and the PCA-plus-residual density's normalisation."""

import json
import math
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from scipy import stats

from genmodels import config as config_lib, data, families, trainer
from genmodels.families import density, gaussian_mle, gmm
from genmodels.training import train_state
from tests.helpers import smoke_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each family's smoke config, on `digits` (the test split: its first 100 images) with 10 samples
# (digits is not MNIST: sample metrics are skipped anyway), and figures of the mixture only.
CONFIGS = {'gaussian': 'gaussian_mnist', 'kde': 'kde_digits', 'gmm': 'gmm_digits'}
OVERRIDES = {'gaussian': {'data.name': 'digits', 'eval.num_samples': 10, 'train.figures': False},
             'kde': {'eval.num_samples': 10, 'train.figures': False},
             'gmm': {'eval.num_samples': 10, 'model.pca_components': 10}}


def read_lines(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def runs(data_dir, tmp_path_factory):
    """run(name) -> (config, workdir, result) of one fit through trainer.train_and_evaluate,
    made once per family for this module."""
    made = {}

    def run(name: str):
        if name not in made:
            config = smoke_config(CONFIGS[name], data_dir, OVERRIDES[name])
            workdir = str(tmp_path_factory.mktemp(name) / 'run')
            made[name] = config, workdir, trainer.train_and_evaluate(config, workdir)
        return made[name]

    return run


@pytest.fixture(params=sorted(CONFIGS))
def run(request, runs):
    return runs(request.param)


def test_fit_writes_checkpoint_metrics_and_eval(run):
    config, workdir, result = run
    assert os.listdir(os.path.join(workdir, 'checkpoints')) == [str(train_state.FIT_STEP)]
    record = json.load(open(os.path.join(workdir, 'eval.json')))
    assert record == result
    assert record['family'] == config.family and record['step'] == 1
    assert record['num_examples'] == 100 and record['data_dequantized'] == 1
    assert np.isfinite(record['nll_nats']) and np.isfinite(record['nll_bits_per_dim'])
    assert record['nll_bits_per_dim'] == pytest.approx(record['nll_nats'] / (64 * math.log(2)))
    [line] = read_lines(os.path.join(workdir, 'metrics.jsonl'))
    assert line['step'] == 1 and line['fit_seconds'] > 0 and np.isfinite(line['train_nll_nats'])
    if config.family == 'gmm':
        assert 1 <= line['em_iterations'] <= config.model.max_iter
        figures = sorted(os.listdir(os.path.join(workdir, 'figures')))
        assert figures == ['em_log_likelihood.png', 'gmm_means.png', 'pca_samples.png',
                           'samples.png']


def test_rerun_evaluates_without_refitting(run, monkeypatch):
    config, workdir, result = run
    checkpoint_dir = os.path.join(workdir, 'checkpoints', '1')
    before = {f: os.path.getmtime(os.path.join(checkpoint_dir, f))
              for f in os.listdir(checkpoint_dir)}

    def no_refit(*args):
        raise AssertionError('refitted a workdir that holds the fitted state')

    monkeypatch.setattr(families.get(config.family), 'fit', no_refit)
    assert trainer.train_and_evaluate(config, workdir) == result
    assert os.listdir(os.path.join(workdir, 'checkpoints')) == ['1']
    assert before == {f: os.path.getmtime(os.path.join(checkpoint_dir, f))
                      for f in os.listdir(checkpoint_dir)}
    assert len(read_lines(os.path.join(workdir, 'metrics.jsonl'))) == 1


def test_gaussian_test_likelihood_equals_scipy(runs):
    config, workdir, result = runs('gaussian')
    flat = lambda split, n=None: data.load_split(config.data, split, n)['image'].reshape(
        -1, 64).astype(np.float64)
    train, test = flat('train'), flat('test', 100)
    cov = np.cov(train, rowvar=False, bias=True) + config.model.reg_covar * np.eye(64)
    log_p = stats.multivariate_normal(train.mean(0), cov).logpdf(test)
    nll = -np.mean(log_p) + 64 * math.log(17)  # discrete data: - D log(bin width 1/17)
    assert result['nll_nats'] == pytest.approx(nll, rel=1e-4)


def test_eval_py_reproduces_the_trainers_evaluation(runs):
    config, workdir, result = runs('gmm')
    os.remove(os.path.join(workdir, 'eval.json'))
    out = subprocess.run([sys.executable, 'eval.py', '--workdir', workdir], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.load(open(os.path.join(workdir, 'eval.json'))) == result


def fitted(family, config, images, rng=jax.random.key(0)):
    return family.fit(config, {'image': images}, rng)[0]


def digits_config(data_dir, pca_components: int) -> ml_collections.ConfigDict:
    config = smoke_config('gaussian_mnist', data_dir, OVERRIDES['gaussian'])
    config.model.pca_components = pca_components
    return config


def test_pca_density_is_probabilistic_pca(data_dir):
    """Gaussian on k principal coordinates + isotropic residual = N(m + W mu, W S W^T + s^2 (I -
    W W^T)) on the pixels (Tipping & Bishop 1999)."""
    config = digits_config(data_dir, 20)
    train = data.load_split(config.data, 'train')['image']
    test = data.load_split(config.data, 'test', 50)['image']
    params = jax.tree.map(np.asarray, fitted(gaussian_mle, config, train))
    w, s2 = params['components'].astype(np.float64), float(params['residual_var'])
    est = params['estimator']
    mean = params['mean'].reshape(-1) + w @ est['mean']
    cov = w @ est['covariance'] @ w.T + s2 * (np.eye(64) - w @ w.T)
    expected = stats.multivariate_normal(mean, cov).logpdf(test.reshape(50, -1))
    got = gaussian_mle.log_likelihood(config, params, {'image': test}, None)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_pca_with_all_components_equals_the_model_without(data_dir):
    train = data.load_split(digits_config(data_dir, 0).data, 'train')['image']
    test = data.load_split(digits_config(data_dir, 0).data, 'test', 50)['image']
    log_p = {}
    for k in (0, 64):
        config = digits_config(data_dir, k)
        params = fitted(gaussian_mle, config, train)
        log_p[k] = gaussian_mle.log_likelihood(config, params, {'image': test}, None)
    np.testing.assert_allclose(log_p[64], log_p[0], rtol=1e-4)


def test_gmm_on_pca_plus_residual_integrates_to_one():
    """A 2-component mixture on 1 principal coordinate of 3-D data, times the isotropic residual
    on the other 2: sum of p(x) over a fine grid times the cell volume is 1."""
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(-1.5, 0.4, 300), rng.normal(1.0, 0.6, 300)])
    direction = np.array([2.0, 1.0, 2.0]) / 3.0
    x = z[:, None] * direction + 0.3 * rng.normal(size=(600, 3)) + 0.2
    config = ml_collections.ConfigDict({
        'objective': 'em', 'data': {'name': 'toy'},
        'model': {'pca_components': 1, 'n_components': 2, 'covariance_type': 'full',
                  'max_iter': 100, 'tol': 1e-4, 'reg_covar': 1e-6, 'n_init': 1,
                  'init_params': 'kmeans'}})
    params = fitted(gmm, config, x.reshape(600, 1, 3, 1).astype(np.float32))
    axis = np.linspace(-4.0, 4.0, 81)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing='ij'), -1).reshape(-1, 1, 3, 1)
    log_p = density.log_likelihood(config, params, grid.astype(np.float32), gmm.ESTIMATOR)
    assert float(np.sum(np.exp(log_p)) * (axis[1] - axis[0]) ** 3) == pytest.approx(1.0, abs=1e-4)


def test_bad_input_leaves_no_workdir(data_dir, tmp_path):
    config = digits_config(data_dir, 65)
    with pytest.raises(ValueError, match='model.pca_components=65 exceeds the 64 dimensions'):
        trainer.train_and_evaluate(config, str(tmp_path / 'w'))
    assert not os.path.exists(tmp_path / 'w')


def test_fit_configs_have_no_optimizer_or_loop_settings(data_dir):
    config = smoke_config('gmm_digits', data_dir, OVERRIDES['gmm'])
    config.optimizer = ml_collections.ConfigDict({'learning_rate': 1e-3})
    with pytest.raises(config_lib.ConfigError, match='unknown config key optimizer'):
        families.validated(config)
    config = smoke_config('kde_digits', data_dir, OVERRIDES['kde'])
    config.eval.use_ema = True
    with pytest.raises(config_lib.ConfigError, match='a fit has no moving average'):
        families.validated(config)


def test_kde_bandwidth_from_the_command_line_is_a_number(data_dir):
    config = smoke_config('kde_digits', data_dir, OVERRIDES['kde'])
    config.model.bandwidth = '0.25'  # absl parses --config.model.bandwidth=0.25 as a string
    families.validated(config)
    assert families.get('kde').bandwidth(config) == 0.25
    config.model.bandwidth = 'scot'
    with pytest.raises(config_lib.ConfigError, match="one of \\('scott'"):
        families.validated(config)
