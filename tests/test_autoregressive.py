"""The autoregressive transformer: a normalised distribution over all sequences, causal
conditionals, the key-value cache against recomputing the prefix, and a smoke run end to end."""

import functools
import itertools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ar_digits
from genmodels import data, families, trainer
from genmodels.families import autoregressive as ar
from tests.helpers import smoke_config

LEVELS, LENGTH = 3, 4  # a tiny vocabulary and sequence: 3^4 = 81 sequences to enumerate


CONDITIONAL = {'model.conditional': True}  # ar_digits' smoke model with a leading class token


@functools.cache
def _initial_params():
    """The smoke config's transformer over LEVELS levels and 2 classes, 12 positions, at its
    random initialisation (jitted: eager flax init takes seconds)."""
    net = ar.network(smoke_config('ar_digits', None, CONDITIONAL), LEVELS, 2, 12)
    return jax.jit(net.init)(jax.random.key(0), jnp.zeros((1, 12), jnp.int32))['params']


def _params(length=LENGTH):
    """The initial parameters cut to `length` positions (a model of shorter sequences)."""
    params = dict(_initial_params())
    params['pos_embed'] = params['pos_embed'][:length]
    return params


def test_probabilities_of_all_sequences_sum_to_one_for_each_context():
    config, params = smoke_config('ar_digits', None, CONDITIONAL), _params()
    seqs = jnp.array(list(itertools.product(range(LEVELS), repeat=LENGTH)), jnp.int32)  # [81, 4]
    log_probs = jax.jit(lambda p, context: ar.token_log_probs(config, p, seqs, context))
    for c in range(2):
        log_p = jnp.sum(log_probs(params, jnp.full((len(seqs),), LEVELS + c, jnp.int32)), -1)
        probs = np.exp(np.asarray(log_p, np.float64))
        assert probs.min() > 0 and probs.max() < 0.5   # not a point mass
        np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)


def test_changing_a_token_never_changes_the_distributions_up_to_it():
    config, params = smoke_config('ar_digits', None, CONDITIONAL), _params()
    tokens = jax.random.randint(jax.random.key(1), (8, LENGTH), 0, LEVELS)
    context = jnp.full((8,), LEVELS, jnp.int32)

    @jax.jit
    def logits(t):  # position j: the distribution of token j
        ids = jnp.concatenate([context[:, None], t[:, :-1]], axis=1)
        return ar._apply(config, params, ids)[0]

    base = np.asarray(logits(tokens))
    for i in range(LENGTH):
        changed = np.asarray(logits(tokens.at[:, i].set((tokens[:, i] + 1) % LEVELS)))
        np.testing.assert_allclose(changed[:, :i + 1], base[:, :i + 1], rtol=0, atol=1e-6)
        if i < LENGTH - 1:  # and the later ones do see it
            assert np.abs(changed[:, i + 1:] - base[:, i + 1:]).max() > 1e-3


def test_cached_and_recomputing_samplers_draw_the_same_tokens():
    config, params = smoke_config('ar_digits', None, CONDITIONAL), _params(12)
    config.sampler.temperature = 0.7
    context = LEVELS + jnp.arange(32, dtype=jnp.int32) % 2
    prefix = jax.random.randint(jax.random.key(2), (32, 12), 0, LEVELS)
    given = 5  # completion: the first 5 tokens are given, the other 7 drawn through the cache
    run = jax.jit(lambda p, k, cache: ar.sample_tokens(config, p, k, context, prefix,
                                                       num_given=given, cache=cache),
                  static_argnums=2)
    cached = np.asarray(run(params, jax.random.key(3), True))
    recomputed = np.asarray(run(params, jax.random.key(3), False))
    np.testing.assert_array_equal(cached, recomputed)
    np.testing.assert_array_equal(cached[:, :given], np.asarray(prefix)[:, :given])
    assert len(np.unique(cached[:, given:])) == LEVELS  # really sampled


def test_bad_configs_are_one_line_errors():
    for mutate, message in [
        (lambda c: setattr(c.sampler, 'temperature', 0.0), 'sampler.temperature'),
        (lambda c: setattr(c.model, 'num_heads', 5), 'divisible'),
        (lambda c: setattr(c.data, 'dequantize', True), 'discrete pixels'),
    ]:
        config = ar_digits.get_config()
        mutate(config)
        with pytest.raises(ValueError, match=message):
            families.validated(config)
    assert 'sampler.temperature' in families.resumable_keys(families.get('autoregressive'))


def test_digits_smoke_run_reports_exact_nll_and_perplexity(tmp_path, data_dir):
    # Figures and the sampler timing cost compilations (a third of the run); the sampler is tested
    # above.
    config = smoke_config('ar_digits', data_dir, {'train.figures': False,
                                                  'eval.timing_samples': 0})
    workdir = str(tmp_path / 'ar')
    result = trainer.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, 'eval.json')) as f:
        saved = json.load(f)
    for key in ('nll_nats', 'nll_bits_per_dim', 'perplexity'):
        assert np.isfinite(saved[key]) and saved[key] == result[key]
    assert saved['family'] == 'autoregressive'
    # 64 tokens of the 17 raw levels: a mass on the discrete data, no correction.
    assert (saved['data_num_levels'], saved['data_binarized'], saved['data_dequantized']) == (
        17, 0, 0)
    assert math.isclose(saved['perplexity'], math.exp(saved['nll_nats'] / 64), rel_tol=1e-6)
    assert math.isclose(saved['nll_bits_per_dim'], saved['nll_nats'] / (64 * math.log(2)),
                        rel_tol=1e-6)
    # 20 steps from the uniform 17-way guess (log 17 = 2.83 nats per token) already help.
    assert 1.0 < saved['perplexity'] < 17.0  # better than the uniform guess over 17 levels


def test_text_file_smoke_run_reports_perplexity_per_character_and_text_figures(tmp_path):
    path = tmp_path / 'corpus.txt'
    path.write_text('the quick brown fox jumps over the lazy dog. ' * 40, encoding='utf-8')
    # a repeated sentence: 20 steps at a higher learning rate learn much of it
    config = smoke_config('ar_text', None, {'data.name': f'text:{path}', 'eval.timing_samples': 0,
                                            'optimizer.learning_rate': 1e-2})
    workdir = str(tmp_path / 'ar_text')
    trainer.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, 'eval.json')) as f:
        saved = json.load(f)
    length = config.data.sequence_length
    levels = len(set('the quick brown fox jumps over lazy dg.'))
    assert saved['data_num_levels'] == levels == 28
    assert math.isclose(saved['perplexity'], math.exp(saved['nll_nats'] / length), rel_tol=1e-6)
    assert 1.0 < saved['perplexity'] < levels / 2  # 20 steps beat the uniform guess well
    assert 'is text' in saved['sample_metrics_note']
    for name in ('samples', 'completions', 'progress/samples_0000020'):
        with open(os.path.join(workdir, 'figures', f'{name}.txt'), encoding='utf-8') as f:
            assert set(f.read()) - set('-0123456789|()\'" \n:adt') <= set(data.vocabulary(
                config.data))
        assert os.path.getsize(os.path.join(workdir, 'figures', f'{name}.png')) > 0


def test_remat_blocks_give_the_same_gradients_and_leave_sampling_alone():
    """train.remat = 'blocks' recomputes each transformer block in the backward pass of training
    (the cached sampler never remats); the same parameters fit both."""
    params = {'params': _initial_params()}
    ids = jax.random.randint(jax.random.key(1), (3, 12), 0, LEVELS + 2)
    grads = []
    for remat in ('none', 'blocks'):
        config = smoke_config('ar_digits', None, CONDITIONAL, {'train.remat': remat})
        net = ar.network(config, LEVELS, 2, 12)
        assert net.remat == (remat == 'blocks')
        loss = lambda p: jnp.sum(jax.nn.log_softmax(net.apply(p, ids)[0])[..., 0])  # noqa: E731
        grads.append(jax.grad(loss)(params))
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # recomputed: float rounding
