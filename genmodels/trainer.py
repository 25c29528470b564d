"""The generic training loop: every family runs through `train_and_evaluate`.

The loop knows nothing of the family beyond the contract (`init`, `train_step`, `evaluate`,
`figures`). It owns: config validation, the workdir, one jitted and sharded step with the state
donated, the data stream, orbax checkpoints with automatic resume, logging (JSON lines, TensorBoard,
a progress bar) and the NaN/Inf guard. A classical family exports `fit` instead of `init` and
`train_step`: `fit_and_evaluate` fits it once on the whole train split and saves it the same way.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from genmodels import checkpoint, config as config_lib, data, evaluation, families, parallel
from genmodels import metric_writer

PyTree = Any


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the message names the step range and the last good checkpoint."""


class WorkdirError(ValueError):
    """The workdir holds a run with a different config."""


# Keys that may change when a run is resumed: extending a run or changing how often it reports.
RESUMABLE_KEYS = ('train.num_steps', 'train.log_every', 'train.checkpoint_every', 'train.figures',
                  'train.fid_every', 'train.fid_num_samples', 'eval.batch_size',
                  'eval.max_examples', 'eval.num_samples', 'eval.iwae_k')


def _flatten(d: dict, prefix: str = '') -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f'{prefix}{k}.')
        else:
            out[f'{prefix}{k}'] = list(v) if isinstance(v, tuple) else v
    return out


def prepare_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Checks a resumed run's config against the saved one, then writes config.json atomically."""
    check_workdir(config, workdir)
    write_config(config, workdir)


def check_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Raises WorkdirError if `workdir` holds a run whose config differs beyond RESUMABLE_KEYS."""
    path = os.path.join(workdir, 'config.json')
    if os.path.exists(path):
        with open(path) as f:
            old = _flatten(json.load(f))
        new = _flatten(json.loads(config_lib.to_json(config)))
        changed = sorted(k for k in set(old) | set(new)
                         if old.get(k) != new.get(k) and k not in RESUMABLE_KEYS)
        if changed:
            raise WorkdirError(
                f'{workdir} holds a run with a different config ({", ".join(changed[:5])}); '
                f'use a new --workdir, or the same config to resume.')


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    path = os.path.join(workdir, 'config.json')
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(config_lib.to_json(config))
        os.replace(tmp, path)


def make_train_step(config: ml_collections.ConfigDict, family, mesh, state_sharding):
    """jit(train_step) with the batch sharded P('data'), the state replicated and donated."""
    train_key = jax.random.fold_in(jax.random.key(config.seed), 1)

    def step(state, batch):
        rng = jax.random.fold_in(train_key, state['step'])  # One key per step, any device count.
        return family.train_step(config, state, batch, rng)

    return jax.jit(step, in_shardings=(state_sharding, parallel.data_sharding(mesh)),
                   out_shardings=(state_sharding, parallel.replicated(mesh)), donate_argnums=0)


def init_state(config: ml_collections.ConfigDict, family, mesh, example_batch) -> PyTree:
    init_key = jax.random.fold_in(jax.random.key(config.seed), 0)
    init = jax.jit(functools.partial(family.init, config), out_shardings=parallel.replicated(mesh))
    return init(init_key, example_batch)


def example_batch(info: data.DatasetInfo) -> dict[str, np.ndarray]:
    """One all-zero example: what `init` needs to build the networks for this dataset."""
    return {'image': np.zeros((1,) + info.shape, np.float32), 'label': np.zeros((1,), np.int32),
            'index': np.zeros((1,), np.int32)}


def abstract_state(config: ml_collections.ConfigDict, family, mesh, example) -> PyTree:
    """Shapes, dtypes and (replicated) shardings of the state, without computing it."""
    shapes = jax.eval_shape(lambda b: init_state(config, family, mesh, b), example)
    return checkpoint.abstract(shapes, parallel.replicated(mesh))


def _check_finite(history: list[dict[str, float]], first_step: int, mngr) -> None:
    for i, m in enumerate(history):
        if not np.isfinite(m['loss']):
            bad = first_step + i + 1
            last = mngr.latest_step()
            where = f'step {last}' if last is not None else 'none saved yet'
            raise NonFiniteLossError(
                f'loss became {m["loss"]} between steps {first_step} and {bad}; last good '
                f'checkpoint: {where}. Lower optimizer.learning_rate or set '
                f'optimizer.grad_clip_norm, then rerun to resume from it.')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       _iterator_hook=None) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming if it holds checkpoints), then evaluates.

    Returns the evaluation metrics (also written to workdir/eval.json).
    `_iterator_hook` wraps the data iterator; tests use it to kill a run mid-way.
    """
    # 1. Everything that can be wrong with the input fails here, before the workdir is touched.
    config_lib.validate(config)
    family = families.get(config.family)
    info = data.dataset_info(config.data)
    if families.is_fit(family):
        return fit_and_evaluate(config, workdir, family)
    parallel.check_batch_size(config.train.batch_size)
    prepare_workdir(config, workdir)

    # 2. State: restored from the latest checkpoint, else initialised.
    mesh = parallel.make_mesh()
    state_sharding = parallel.replicated(mesh)
    example = example_batch(info)
    mngr = checkpoint.manager(workdir, config.train.keep_checkpoints)
    state, start = checkpoint.restore(mngr, abstract_state(config, family, mesh, example))
    if state is None:
        state, start = init_state(config, family, mesh, example), 0

    # 3. The loop.
    num_steps = config.train.num_steps
    step_fn = make_train_step(config, family, mesh, state_sharding)
    batches: Iterator = data.train_iterator(config.data, config.train.batch_size, config.seed,
                                            start_step=start)
    if _iterator_hook is not None:
        batches = _iterator_hook(batches)
    sampler = evaluation.make_sampler(config) if config.train.fid_every else None
    writer = metric_writer.MetricWriter(workdir, start, enabled=jax.process_index() == 0)
    pending: list[dict[str, jax.Array]] = []
    last_logged, t_last = start, time.perf_counter()
    bar = tqdm.tqdm(total=num_steps, initial=start, disable=jax.process_index() != 0,
                    dynamic_ncols=True, desc=f'{config.family}/{config.objective}')
    try:
        for step in range(start + 1, num_steps + 1):
            state, metrics = step_fn(state, parallel.shard_batch(mesh, next(batches)))
            pending.append(metrics)
            if step % config.train.log_every == 0 or step == num_steps:
                history = jax.device_get(pending)
                _check_finite(history, last_logged, mngr)
                now = time.perf_counter()
                summary = {k: float(np.mean([h[k] for h in history])) for k in history[-1]}
                summary['steps_per_sec'] = (step - last_logged) / (now - t_last)
                writer.write(step, summary)
                bar.set_postfix(loss=f'{summary["loss"]:.3f}')
                bar.update(step - last_logged)
                pending, last_logged, t_last = [], step, now
            if config.train.fid_every and step % config.train.fid_every == 0:
                params = state['ema_params'] if config.eval.use_ema else state['params']
                fid = evaluation.training_fid(config, workdir, sampler, params, step)
                if fid:  # Empty when the dataset has no feature extractor (a warning says so).
                    writer.write(step, fid)
            if step % config.train.checkpoint_every == 0 or step == num_steps:
                if pending:  # Never checkpoint past an unchecked loss.
                    _check_finite(jax.device_get(pending), last_logged, mngr)
                checkpoint.save(mngr, step, state)
    finally:
        bar.close()
        mngr.wait_until_finished()
        writer.close()

    # 4. Evaluation and figures of the final state.
    return evaluation.evaluate_state(config, workdir, state, num_steps)


# ------------------------------------------------------------------------------------------------
# Fit families (closed form or EM)

FIT_STEP = 1  # a fitted state is saved once, as step 1


def fit_and_evaluate(config: ml_collections.ConfigDict, workdir: str, family) -> dict[str, float]:
    """Fits a classical family on the whole train split, saves it, then evaluates it.

    A workdir that holds the fitted state is evaluated without refitting. Nothing is written before
    the fit succeeds, so a fit that fails on its input leaves no workdir behind.
    """
    check_workdir(config, workdir)
    replicated = parallel.replicated(parallel.make_mesh())
    state = None
    if os.path.isdir(os.path.join(workdir, 'checkpoints')):
        mngr = checkpoint.manager(workdir, read_only=True)
        state, _ = checkpoint.restore_as_saved(mngr, replicated)
    if state is None:
        state = _fit(config, workdir, family, replicated)
    return evaluation.evaluate_state(config, workdir, state, FIT_STEP)


def _fit(config: ml_collections.ConfigDict, workdir: str, family, sharding) -> PyTree:
    """Fits, then writes config.json, one metrics.jsonl line and the checkpoint of step 1."""
    # One pass over the split, dequantised with load_split's fixed noise (data.eval_seed).
    train = data.load_split(config.data, config.data.train_split)
    rng = jax.random.fold_in(jax.random.key(config.seed), 0)
    start = time.perf_counter()
    params, fit_metrics = family.fit(config, train, rng)
    params = jax.block_until_ready(jax.device_put(params, sharding))
    seconds = time.perf_counter() - start
    state = {'step': jnp.asarray(FIT_STEP, jnp.int32), 'params': params}
    if not checkpoint.all_finite(state):
        raise FloatingPointError(
            f'the {config.family} fit produced non-finite parameters; see the model settings '
            f'(e.g. a larger model.reg_covar or fewer components) and rerun.')
    train_nll = family.evaluate(config, params, train, rng)
    summary = {'fit_seconds': seconds, **fit_metrics,
               **{f'train_{k}': v for k, v in train_nll.items() if k.startswith('nll_')}}
    write_config(config, workdir)
    writer = metric_writer.MetricWriter(workdir, 0, enabled=jax.process_index() == 0)
    writer.write(FIT_STEP, summary)
    writer.close()
    mngr = checkpoint.manager(workdir, keep=1)
    checkpoint.save(mngr, FIT_STEP, state)
    mngr.wait_until_finished()
    return state
