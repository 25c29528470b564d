"""Evaluation of a trained workdir: the family's test metrics -> <workdir>/eval.json, plus figures.

`eval.json` is flat, one number per key with its unit in the name (DESIGN.md), plus `dataset`,
`split`, `family` and `step`, and how the data was preprocessed, so every likelihood is comparable.
Families that can `sample` also get FID/KID/IS/precision/recall of generated images
(genmodels/metrics/sample_quality.py), with the feature extractor's name and sha256. On toy data
the exact density is known, so eval.json also has `true_nll_nats` and `kl_estimate_nats`.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np

from genmodels import checkpoint, config as config_lib, data, families, metrics, parallel
from genmodels.metrics import sample_quality

PyTree = Any


def batches(arrays: dict[str, np.ndarray], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Fixed-size batches over a whole split, the last padded by repetition.

    Each batch carries `index` (the example's position in the split, which keys its noise) and
    `num_valid` (how many leading rows are real).
    """
    n = len(arrays['image'])
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        num_valid = int(min(batch_size, n - start))
        take = np.minimum(idx, n - 1)
        batch = {k: v[take] for k, v in arrays.items() if k in ('image', 'label')}
        batch['index'] = idx.astype(np.int32)
        batch['num_valid'] = num_valid
        yield batch


def preprocessing(config: ml_collections.ConfigDict) -> metrics.Preprocessing:
    """How the data was turned into model inputs: recorded beside every likelihood number."""
    if data.is_toy(config.data.name):
        return metrics.Preprocessing('continuous', low=None, high=None)  # used as they are
    low = -1.0 if config.data.scale == '-11' else 0.0
    if config.data.binarize:
        return metrics.Preprocessing('binarized', num_levels=2, low=low, high=1.0)
    if config.data.dequantize:
        levels = data.dataset_info(config.data).max_value + 1
        return metrics.Preprocessing('dequantized', num_levels=levels, low=low, high=1.0)
    return metrics.Preprocessing('continuous', low=low, high=1.0)


def toy_reference(config: ml_collections.ConfigDict, test: dict[str, np.ndarray],
                  results: dict[str, Any]) -> dict[str, float]:
    """true_nll_nats: the test NLL under the toy's exact density; with the model's nll_nats also
    kl_estimate_nats = nll_nats - true_nll_nats, a Monte Carlo estimate of
    KL(p || q) = E_p[log p(x) - log q(x)] over the test points (x ~ p)."""
    points = test['image'].reshape(len(test['image']), -1)  # [N, D]
    true_nll = -float(np.mean(data.toy_distribution(config.data.name).log_prob(points)))
    record = {'true_nll_nats': true_nll}
    if 'nll_nats' in results:
        record['kl_estimate_nats'] = results['nll_nats'] - true_nll
    return record


def _write_json(path: str, record: dict[str, Any]) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(record, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def evaluate_state(config: ml_collections.ConfigDict, workdir: str, state: PyTree, step: int,
                   max_examples: int | None = None, *, inception_weights: str | None = None,
                   stats_cache: str | None = None) -> dict[str, Any]:
    """Test metrics and figures of a state; writes workdir/eval.json and workdir/figures/.

    A family with `sample` also gets the sample metrics of config.eval.num_samples images
    (genmodels.metrics.sample_quality); the real data's reference statistics are cached in
    `stats_cache` (default: workdir/reference_stats). `inception_weights` is the path of
    pytorch-fid's InceptionV3 weights, needed for datasets other than MNIST digits.
    """
    family = families.get(config.family)
    if hasattr(family, 'sample'):
        sample_quality.check_num_samples(config.eval.num_samples)  # before the slow likelihood
    split = config.data.eval_split
    limit = max_examples if max_examples is not None else config.eval.max_examples
    test = data.load_split(config.data, split, limit)
    params = state['ema_params'] if config.eval.use_ema else state['params']
    params = jax.device_get(params)
    rng = jax.random.fold_in(jax.random.key(config.seed), 2)
    results = family.evaluate(config, params, test, rng)
    if data.is_toy(config.data.name):
        results |= toy_reference(config, test, results)
    if hasattr(family, 'sample'):
        results |= sample_quality.evaluate_samples(
            config, functools.partial(make_sampler(config), params), jax.random.fold_in(rng, 3),
            cache_dir=stats_cache or os.path.join(workdir, 'reference_stats'),
            inception_weights=inception_weights)
    record = {'family': config.family, 'dataset': config.data.name, 'split': split,
              'step': int(step), 'num_examples': int(len(test['image'])),
              **preprocessing(config).record(), **results}
    if jax.process_index() == 0:
        if config.train.figures:
            fig_dir = os.path.join(workdir, 'figures')
            os.makedirs(fig_dir, exist_ok=True)
            family.figures(config, params, test, jax.random.fold_in(rng, 1), fig_dir)
        _write_json(os.path.join(workdir, 'eval.json'), record)
    return record


def make_sampler(config: ml_collections.ConfigDict):
    """jit(sample): (params, key) -> eval.batch_size images. Build it once and reuse it: each
    new jit wrapper compiles again."""
    family = families.get(config.family)
    b = config.eval.batch_size
    return jax.jit(lambda p, key: family.sample(config, p, key, b))


def training_fid(config: ml_collections.ConfigDict, workdir: str, sampler, params: PyTree,
                 step: int) -> dict[str, float]:
    """FID of a small sample during training, labelled with its sample size (it is biased
    upwards at small N, so only compare numbers with the same label). `sampler` comes from
    `make_sampler`."""
    small = ml_collections.ConfigDict(config.to_dict())
    small.eval.num_samples = config.train.fid_num_samples
    rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), 4), step)
    result = sample_quality.evaluate_samples(
        small, functools.partial(sampler, params), rng,
        cache_dir=os.path.join(workdir, 'reference_stats'))
    n = config.train.fid_num_samples
    return {f'{key}_{n}samples': value for key, value in result.items()
            if key.startswith('fid_') and not key.endswith('num_images')}


def load_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, 'config.json')
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path} not found: --workdir must be a directory made by train.py.')
    with open(path) as f:
        cfg = config_lib.from_json(f.read())
    config_lib.validate(cfg)
    return cfg


def restore(workdir: str, overrides: dict | None = None
            ) -> tuple[ml_collections.ConfigDict, PyTree, int]:
    """(config, state, step) of the latest checkpoint of `workdir`; `overrides` maps
    'section.key' to a new value (only keys that a resumed run may change make sense here)."""
    from genmodels import trainer  # Local import: trainer imports this module.

    config = load_config(workdir)
    for key, value in (overrides or {}).items():
        section, name = key.split('.')
        config[section][name] = value
    config_lib.validate(config)
    family = families.get(config.family)
    mesh = parallel.make_mesh()
    mngr = checkpoint.manager(workdir, read_only=True)
    if families.is_fit(family):  # its shapes depend on the data: the checkpoint records them
        state, step = checkpoint.restore_as_saved(mngr, parallel.replicated(mesh))
    else:
        example = trainer.example_batch(data.dataset_info(config.data))
        state, step = checkpoint.restore(
            mngr, trainer.abstract_state(config, family, mesh, example))
    if state is None:
        raise FileNotFoundError(f'no checkpoint in {workdir}/checkpoints: train it first.')
    return config, state, step


def evaluate(workdir: str, max_examples: int | None = None, overrides: dict | None = None, *,
             inception_weights: str | None = None, stats_cache: str | None = None
             ) -> dict[str, Any]:
    """Loads the latest checkpoint of `workdir` and evaluates it (eval.py's entry point)."""
    config, state, step = restore(workdir, overrides)
    return evaluate_state(config, workdir, state, step, max_examples,
                          inception_weights=inception_weights, stats_cache=stats_cache)
