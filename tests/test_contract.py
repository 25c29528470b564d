"""The family contract without the VAE: a stub two-optimizer family (tests/stub_family.py) through
the trainer's and the evaluation's own paths; several seeds in one program; the NaN guard."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from configs import common
from genmodels import config as config_lib, evaluation, families, trainer
from genmodels.training import workdir as workdir_lib
from tests.helpers import DCGAN, VAE, smoke_config
from tests.test_trainer import Killed, kill_after, poison_at, read_metrics, restore_params

families.register('stub', 'tests.stub_family')


def stub_config(data_dir: str, num_steps: int = 12, num_seeds: int = 1):
    config = ml_collections.ConfigDict()
    config.family = 'stub'
    config.objective = 'mse'
    config.seed = 0
    config.data = common.data('digits')
    config.data.data_dir = data_dir
    config.model = ml_collections.ConfigDict({'temperature': 1.0})
    config.loss = ml_collections.ConfigDict({'noise_scale': 0.1, 'b_steps': 2})
    config.optimizer = common.optimizer(0.05)
    config.second_optimizer = common.optimizer(0.1, schedule='cosine')
    config.train = common.train(batch_size=16, num_steps=num_steps, log_every=2,
                                checkpoint_every=4)
    config.train.num_seeds = num_seeds
    config.eval = common.evaluation(batch_size=64, num_samples=20)
    config.eval.max_examples = 100
    return config


def lane(tree, s):
    return jax.tree.map(lambda x: np.asarray(x)[s], tree)


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize('num_seeds', [1, 2])
def test_stub_family_trains_resumes_bit_for_bit_and_evaluates_the_same(tmp_path, data_dir,
                                                                      num_seeds):
    config = stub_config(data_dir, num_seeds=num_seeds)
    straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
    result = trainer.train_and_evaluate(config, straight)
    logs = read_metrics(straight)
    assert logs[-1]['loss_a'] < logs[0]['loss_a'] and logs[-1]['variance'] != 1.0
    assert ('loss_a/seed1' in logs[-1]) == (num_seeds == 2)
    assert np.isfinite(result['nll_nats']) and 'sample_metrics_note' in result  # digits: no FID
    with pytest.raises(Killed):
        trainer.train_and_evaluate(config, resumed, iterator_hook=kill_after(6))
    trainer.train_and_evaluate(config, resumed)
    assert_trees_equal(restore_params(straight, 12), restore_params(resumed, 12))
    assert [m['loss_b'] for m in read_metrics(straight)] == [
        m['loss_b'] for m in read_metrics(resumed)]
    # eval.py's path: restore from the checkpoint, then the same evaluation.
    again = evaluation.evaluate_workdir(straight)
    assert again == result == json.load(open(os.path.join(resumed, 'eval.json')))
    # eval_params is the family's: the variance is player b's.
    log_c = np.asarray(restore_params(straight, 12)['b']['log_c'])
    want = [result['variance']] if num_seeds == 1 else [result['variance_seed0'],
                                                       result['variance_seed1']]
    np.testing.assert_allclose(want, np.exp(log_c).reshape(-1), rtol=1e-6)


def test_family_resumable_keys_may_change_and_others_may_not(tmp_path, data_dir):
    config = stub_config(data_dir, num_steps=4)
    workdir = str(tmp_path / 'w')
    trainer.train_and_evaluate(config, workdir)
    config.model.temperature = 0.5  # the family's RESUMABLE_KEYS
    config.train.num_steps = 6
    assert trainer.train_and_evaluate(config, workdir)['step'] == 6
    config.loss.b_steps = 3
    with pytest.raises(workdir_lib.WorkdirError, match='loss.b_steps'):
        trainer.train_and_evaluate(config, workdir)


def test_every_optimizer_section_is_validated(data_dir):
    config = stub_config(data_dir)
    config.second_optimizer.learning_rate = -1.0
    with pytest.raises(config_lib.ConfigError, match='second_optimizer.learning_rate must be '
                                                     'positive'):
        families.validated(config)
    config = stub_config(data_dir)
    config.second_optimizer.name = 'sgd'
    with pytest.raises(config_lib.ConfigError, match="second_optimizer.name must be one of"):
        families.validated(config)


def test_nan_guard_names_the_metric_and_the_seed_lanes_are_checked(tmp_path, data_dir):
    config = stub_config(data_dir, num_seeds=2)
    workdir = str(tmp_path / 'nan')
    with pytest.raises(workdir_lib.NonFiniteLossError,
                       match=r'^loss_a, .* became non-finite \(loss_a = \[.*\]\) between steps 2 '
                             r'and 3; last good checkpoint: none saved yet'):
        trainer.train_and_evaluate(config, workdir, iterator_hook=poison_at(3, np.inf))
    assert not os.path.exists(os.path.join(workdir, 'checkpoints', '4'))


def run_lanes(config, tmp_path, name, num_seeds=3):
    """Trains config with num_seeds lanes and each lane alone (num_seeds=1, seed + s); returns the
    workdirs. The families' tests use 2 lanes: each lane costs a whole training and evaluation,
    and lane 1 already checks that lanes get their own seed and are not mixed with lane 0."""
    many = str(tmp_path / f'{name}_seeds{num_seeds}')
    config.train.num_seeds = num_seeds
    trainer.train_and_evaluate(config, many)
    singles = []
    for s in range(num_seeds):
        single = ml_collections.ConfigDict(config.to_dict())
        single.train.num_seeds = 1
        single.seed = config.seed + s
        singles.append(str(tmp_path / f'{name}_seed{s}'))
        trainer.train_and_evaluate(single, singles[-1])
    return many, singles


def assert_lanes_match(stacked, s, single):
    """Lane s equals the single-seed run up to float32 round-off: vmap batches the reductions,
    which XLA may sum in another order (seen: 1 ulp on some elements after 4 steps). Adam divides
    each gradient by its running RMS, so the round-off of a near-zero gradient can move that
    weight by a good share of one step's update (lr 2e-4): seen 1.1e-6 on 1 of 3,136 weights of
    the 2-lane GAN. A lane mixed with another, or given the wrong seed, differs by whole updates
    on most weights and in the logged losses."""
    for x, y in zip(jax.tree.leaves(lane(stacked, s)), jax.tree.leaves(single), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_each_seed_lane_is_the_single_seed_run_with_that_seed(tmp_path, data_dir):
    config = stub_config(data_dir, num_steps=4)
    many, singles = run_lanes(config, tmp_path, 'stub')
    stacked = restore_params(many, 4)
    assert np.shape(stacked['step']) == (3,)
    record = json.load(open(os.path.join(many, 'eval.json')))
    logs = read_metrics(many)
    for s, single in enumerate(singles):
        assert_lanes_match(stacked, s, restore_params(single, 4))
        alone = json.load(open(os.path.join(single, 'eval.json')))
        assert record[f'nll_nats_seed{s}'] == pytest.approx(alone['nll_nats'], rel=1e-5)
        np.testing.assert_allclose([m[f'loss_a/seed{s}'] for m in logs],
                                   [m['loss_a'] for m in read_metrics(single)], rtol=1e-5)
    values = [record[f'nll_nats_seed{s}'] for s in range(3)]
    assert record['nll_nats'] == pytest.approx(np.mean(values))
    assert record['nll_nats_seeds_std'] == pytest.approx(np.std(values))
    assert record['num_seeds'] == 3 and record['dataset'] == 'digits'


def test_vae_seed_lanes_match_single_seed_runs(tmp_path, data_dir):
    config = smoke_config('vae_mnist', data_dir, VAE, {'train.num_steps': 4})
    config.train.checkpoint_every = 4
    many, singles = run_lanes(config, tmp_path, 'vae', num_seeds=2)
    stacked = restore_params(many, 4)
    record = json.load(open(os.path.join(many, 'eval.json')))
    for s, single in enumerate(singles):
        assert_lanes_match(stacked, s, restore_params(single, 4))
        alone = json.load(open(os.path.join(single, 'eval.json')))
        for key in ('nll_nats', 'elbo_nats', 'fid_mnist_classifier'):
            assert record[f'{key}_seed{s}'] == pytest.approx(alone[key], rel=1e-4)
    assert {'nll_nats', 'nll_nats_seeds_std', 'fid_mnist_classifier_seeds_std'} <= set(record)


def test_gan_seed_lanes_match_single_seed_runs(tmp_path, data_dir):
    """Both players, both optimizers, batch-norm and spectral-norm state and n_disc = 2 D steps,
    lane by lane."""
    config = smoke_config('dcgan_mnist', data_dir, DCGAN, {'train.num_steps': 4})
    many, singles = run_lanes(config, tmp_path, 'gan', num_seeds=2)
    stacked = restore_params(many, 4)
    record = json.load(open(os.path.join(many, 'eval.json')))
    logs = read_metrics(many)
    for s, single in enumerate(singles):
        assert_lanes_match(stacked, s, restore_params(single, 4))
        alone = json.load(open(os.path.join(single, 'eval.json')))
        assert record[f'fid_mnist_classifier_seed{s}'] == pytest.approx(
            alone['fid_mnist_classifier'], rel=1e-4)
        np.testing.assert_allclose([m[f'd_loss/seed{s}'] for m in logs],
                                   [m['d_loss'] for m in read_metrics(single)], rtol=1e-5)
