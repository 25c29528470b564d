"""The generic training loop: every family runs through `train_and_evaluate`.

The loop knows nothing of the family beyond the contract (genmodels/families/__init__.py). It owns:
config validation, the workdir, one jitted and sharded step with the state donated, several seeds
in one program (vmapped over a leading seed axis of the state), the data stream, orbax checkpoints
with automatic resume, logging (JSON lines, TensorBoard, a progress bar) and the NaN/Inf guard. A
classical family exports `fit` instead of `init` and `train_step`: `fit_and_evaluate` fits it once
on the whole train split and saves it the same way.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from genmodels import config as config_lib, data, evaluation, families
from genmodels.training import checkpoint, metric_writer, parallel, preemption, train_state

PyTree = Any


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the message names the step range and the last good checkpoint."""


class WorkdirError(ValueError):
    """The workdir holds a run with a different config, or cannot be written."""


# Keys that may change when a run is resumed: extending a run or changing how often it reports.
# A family adds its own (families.resumable_keys), e.g. a sampler's settings.
RESUMABLE_KEYS = ('train.num_steps', 'train.log_every', 'train.checkpoint_every', 'train.figures',
                  'train.figures_every', 'train.fid_every', 'train.fid_num_samples',
                  'eval.batch_size', 'eval.max_examples', 'eval.num_samples', 'eval.iwae_k')


def _flatten(d: dict, prefix: str = '') -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f'{prefix}{k}.')
        else:
            out[f'{prefix}{k}'] = list(v) if isinstance(v, tuple) else v
    return out


def prepare_workdir(config: ml_collections.ConfigDict, workdir: str, family) -> None:
    """Checks a resumed run's config against the saved one, then writes config.json atomically."""
    check_workdir(config, workdir, family)
    write_config(config, workdir)


def check_workdir(config: ml_collections.ConfigDict, workdir: str, family) -> None:
    """Raises WorkdirError if `workdir` cannot be written, or holds a run whose config differs
    beyond the resumable keys (the trainer's and the family's)."""
    try:
        saved = config_lib.read_saved(workdir, families.added_keys)
    except ValueError as e:
        raise WorkdirError(str(e)) from None
    check_writable(workdir)
    if saved is not None:
        old = _flatten(saved)
        new = _flatten(json.loads(config_lib.to_json(config)))
        resumable = set(RESUMABLE_KEYS) | set(families.resumable_keys(family))
        changed = sorted(k for k in set(old) | set(new)
                         if old.get(k) != new.get(k) and k not in resumable)
        if changed:
            raise WorkdirError(
                f'{workdir} holds a run with a different config ({", ".join(changed[:5])}); '
                f'use a new --workdir, or the same config to resume.')


def check_writable(workdir: str) -> None:
    """Raises WorkdirError unless `workdir` is, or can be made as, a writable directory."""
    existing = os.path.abspath(workdir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise WorkdirError(f'--workdir {workdir} lies under {existing}, which is a file; give a '
                           f'path under a directory.')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirError(f'--workdir {workdir}: {existing} is not writable; give a path you '
                           f'can write to.')


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    path = os.path.join(workdir, 'config.json')
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(config_lib.to_json(config))
        os.replace(tmp, path)


def make_train_step(config: ml_collections.ConfigDict, family, mesh, state_sharding):
    """jit(train_step) over all seed lanes, with the batch sharded P('data') and shared by the
    lanes, the state replicated and donated. Step t of lane s gets the key
    fold_in(fold_in(key(config.seed + s), 1), t), whatever the device count."""
    def lane_step(state, batch, key):
        rng = jax.random.fold_in(jax.random.fold_in(key, train_state.TRAIN), state['step'])
        return family.train_step(config, state, batch, rng)

    keys = train_state.model_keys(config)
    step = train_state.over_seeds(config, lane_step, in_axes=(0, None, 0))
    return jax.jit(lambda state, batch: step(state, batch, keys),
                   in_shardings=(state_sharding, parallel.data_sharding(mesh)),
                   out_shardings=(state_sharding, parallel.replicated(mesh)), donate_argnums=0)


def _check_finite(history: list[dict[str, np.ndarray]], first_step: int, mngr) -> None:
    """Every float metric of every logged step, all elements (every seed lane), must be finite."""
    for i, m in enumerate(history):
        bad = [k for k, v in m.items()
               if np.issubdtype(np.asarray(v).dtype, np.floating) and not np.all(np.isfinite(v))]
        if bad:
            last = mngr.latest_step()
            where = f'step {last}' if last is not None else 'none saved yet'
            value = np.asarray(m[bad[0]])
            shown = value.item() if value.size == 1 else value.tolist()
            raise NonFiniteLossError(
                f'{", ".join(bad)} became non-finite ({bad[0]} = {shown}) between steps '
                f'{first_step} and {first_step + i + 1}; last good checkpoint: {where}. Lower '
                f'the learning rate or set grad_clip_norm, then rerun to resume from it.')


def summarize(config: ml_collections.ConfigDict, history: list[dict[str, np.ndarray]]
              ) -> dict[str, float]:
    """Mean of each metric over the logged steps (and seeds); with several seeds, also
    `<key>/seed<i>` (the mean over steps of lane i)."""
    summary = {}
    for key in history[-1]:
        values = np.stack([np.asarray(h[key], np.float64) for h in history])  # [T] or [T, S]
        summary[key] = float(np.mean(values))
        if train_state.num_seeds(config) > 1:
            summary |= {f'{key}/seed{i}': float(v) for i, v in enumerate(values.mean(axis=0))}
    return summary


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       iterator_hook=None) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming if it holds checkpoints), then evaluates.

    Returns the evaluation metrics (also written to workdir/eval.json).
    `iterator_hook`, a function of the batch iterator returning one, wraps the data stream: the
    benchmarks end a run after the steps they time, and tests kill or poison a run mid-way.
    """
    # 1. Everything that can be wrong with the input fails here, before the workdir is touched.
    family = families.validated(config)
    info = data.dataset_info(config.data)
    if families.is_fit(family):
        return fit_and_evaluate(config, workdir, family)
    parallel.check_batch_size(config.train.batch_size, config.train.grad_accum_steps)
    data.check_batch_fits(config.data, config.train.batch_size,
                          info.num_examples[config.data.train_split])
    prepare_workdir(config, workdir, family)

    # 2. State: restored from the latest checkpoint, else initialised.
    mesh = parallel.make_mesh()
    state_sharding = parallel.replicated(mesh)
    example = train_state.example_batch(info)
    mngr = checkpoint.manager(workdir, config.train.keep_checkpoints)
    state, start = checkpoint.restore_newest_good(
        mngr, train_state.abstract_state(config, family, mesh, example))
    if state is None:
        state, start = train_state.init_state(config, family, mesh, example), 0

    # 3. The loop.
    num_steps = config.train.num_steps
    step_fn = make_train_step(config, family, mesh, state_sharding)
    batches: Iterator = data.train_iterator(config.data, config.train.batch_size,
                                            config.data.seed, start_step=start)
    if iterator_hook is not None:
        batches = iterator_hook(batches)
    sampler = evaluation.make_sampler(config, family) if config.train.fid_every else None
    progress = (evaluation.make_progress_sampler(config, family) if config.train.figures_every
                else None)
    writer = metric_writer.MetricWriter(workdir, start, enabled=jax.process_index() == 0)
    shown = families.progress_metrics(family)
    pending: list[dict[str, jax.Array]] = []
    last_logged, t_last = start, time.perf_counter()
    bar = tqdm.tqdm(total=num_steps, initial=start, disable=jax.process_index() != 0,
                    dynamic_ncols=True, desc=f'{config.family}/{config.objective}')
    try:
        with preemption.StopRequests() as stops:
            for step in range(start + 1, num_steps + 1):
                state, metrics = step_fn(state, parallel.shard_batch(mesh, next(batches)))
                if pending:
                    # At most two steps in flight. JAX dispatches asynchronously, so without
                    # this the loop runs up to log_every steps ahead of the computation, and a
                    # stop request would wait for all of them (minutes for a slow step, past a
                    # scheduler's grace period) before its checkpoint is written.
                    jax.block_until_ready(pending[-1])
                pending.append(metrics)
                stop = stops.should_stop(step)
                if step % config.train.log_every == 0 or step == num_steps or stop:
                    history = jax.device_get(pending)
                    _check_finite(history, last_logged, mngr)
                    now = time.perf_counter()
                    summary = summarize(config, history)
                    summary['steps_per_sec'] = (step - last_logged) / (now - t_last)
                    writer.write(step, summary)
                    bar.set_postfix({k: f'{summary[k]:.3f}' for k in shown if k in summary})
                    bar.update(step - last_logged)
                    pending, last_logged, t_last = [], step, now
                if config.train.fid_every and step % config.train.fid_every == 0:
                    fid = evaluation.training_fid(config, workdir, sampler, state, step)
                    if fid:  # Empty when the dataset has no feature extractor (a warning says so).
                        writer.write(step, fid)
                if (progress is not None and step % config.train.figures_every == 0
                        and jax.process_index() == 0):
                    path = evaluation.progress_figure(config, workdir, progress, state, step)
                    writer.write_image(step, 'samples', path)
                if step % config.train.checkpoint_every == 0 or step == num_steps or stop:
                    if pending:  # Never checkpoint past an unchecked metric.
                        _check_finite(jax.device_get(pending), last_logged, mngr)
                    checkpoint.save(mngr, step, state)
                if stop:
                    mngr.wait_until_finished()
                    raise preemption.Preempted(stops.signal_name, step, str(mngr.directory))
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
    check_workdir(config, workdir, family)
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
    rng = jax.random.fold_in(train_state.model_key(config), train_state.INIT)
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
