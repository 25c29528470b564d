"""The generic training loop: every family runs through `train_and_evaluate`.

The loop knows nothing of the family beyond the contract (genmodels/families/__init__.py). A
classical family exports `fit` instead of `init` and `train_step`, and splits off at the top:
`fit_and_evaluate` fits it once on the whole train split and saves it the same way. A deep family
goes through `train`: one jitted and sharded step with the state donated, several seeds in one
program (vmapped over a leading seed axis of the state), the data stream, orbax checkpoints with
automatic resume and preemption, the logs with their NaN/Inf guard, then the evaluation. Its parts
live in genmodels/training/; this module only puts them in order.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import jax
import ml_collections

from genmodels import data, evaluation, families
from genmodels.config import ConfigError
from genmodels.training import checkpoint, train_state, workdir as workdir_lib

PyTree = Any


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       iterator_hook=None) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming if it holds checkpoints), or fits a classical family,
    then evaluates. Returns the evaluation metrics (also written to workdir/eval.json).

    `iterator_hook`, a function of the batch iterator returning one, wraps the data stream: the
    benchmarks end a run after the steps they time, and tests kill or poison a run mid-way.
    A stop request (SIGTERM, SIGINT) raises checkpoint.Preempted: in the loop after saving the
    current step, before it or during the final evaluation at once, as nothing is left to save.
    """
    family = families.validated(config)
    with checkpoint.StopRequests() as stops, workdir_lib.Lock(workdir) as lock:
        stops.at_once = ('before training started; nothing was written since the last '
                         'checkpoint: rerun the same command to go on.')
        if families.is_fit(family):
            return fit_and_evaluate(config, workdir, family, lock)
        state = train(config, workdir, family, lock, stops, iterator_hook)
        steps = config.train.num_steps
        stops.at_once = (f'during the final evaluation; the checkpoint of step {steps} is saved: '
                         f'rerun the same command to evaluate it.')
        return evaluation.evaluate_state(config, family, workdir, state, steps)


def train(config: ml_collections.ConfigDict, workdir: str, family, lock: workdir_lib.Lock,
          stops: checkpoint.StopRequests, iterator_hook=None) -> PyTree:
    """Runs the deep family's training loop to config.train.num_steps; returns the final state."""
    # 1. Everything that can be wrong with the input fails here, before the workdir is touched.
    train_cfg, info = config.train, data.dataset_info(config.data)
    data.check_batch_size(train_cfg.batch_size, train_cfg.grad_accum_steps)
    data.check_batch_fits(config.data, train_cfg.batch_size,
                          info.num_examples[config.data.train_split])
    record = families.provenance(family, config)
    workdir_lib.check(config, workdir, families.resumable_keys(family), families.added_keys,
                      record)
    pairs = families.training_pairs(family, config, workdir, evaluation.restore)
    if pairs is not None:
        data.check_batch_fits(config.data, train_cfg.batch_size, len(pairs['image']))
    start_weights = _init_from(config, family, workdir)
    lock.acquire()
    workdir_lib.write_config(config, workdir, record)

    # 2. State: restored from the newest good checkpoint, else initialised.
    mngr = checkpoint.manager(workdir, train_cfg.keep_checkpoints)
    state, start = train_state.restore_or_init(config, family, train_state.example_batch(info),
                                               mngr, start_weights)

    # 3. The loop.
    batches = data.train_iterator(config.data, train_cfg.batch_size, config.data.seed,
                                  start_step=start, pairs=pairs)
    if iterator_hook is not None:
        batches = iterator_hook(batches)
    step_fn = train_state.host_train_step(config, family, state)
    monitor = evaluation.Monitor(config, family, workdir)
    log = workdir_lib.TrainingLog(
        workdir, start, train_cfg.num_steps, desc=f'{config.family}/{config.objective}',
        shown=families.progress_metrics(family), num_seeds=train_state.num_seeds(config),
        last_checkpoint=mngr.latest_step, enabled=jax.process_index() == 0)
    with checkpoint.writing(mngr, workdir, log.close):
        stops.at_once = None  # from here a stop request waits for the step's end
        for step in range(start + 1, train_cfg.num_steps + 1):
            state, metrics = step_fn(state, next(batches))
            log.add(metrics)
            stop = stops.should_stop(step)
            last = step == train_cfg.num_steps or stop
            if step % train_cfg.log_every == 0 or last:
                log.log(step)
            monitor(step, state, log.writer)
            if step % train_cfg.checkpoint_every == 0 or last:
                log.check_pending()
                checkpoint.save(mngr, step, state)
            if stop:
                mngr.wait_until_finished()
                raise checkpoint.preempted_at(stops.signal_name, step, str(mngr.directory))
    return state


def _init_from(config: ml_collections.ConfigDict, family, workdir: str
               ) -> Callable[[], dict] | None:
    """train.init_from: a function giving that run's weights as this run's first (None when the
    key is empty). A new run reads and checks them here, before its workdir is touched; a run that
    resumes its own checkpoint does not need them, so reads them only if it has to start over."""
    source = config.train.init_from
    if not source:
        return None
    if os.path.abspath(source) == os.path.abspath(workdir):
        raise ConfigError(f'train.init_from={source} is this run\'s own workdir; give another '
                          f'run\'s.')

    def load() -> dict:
        if not os.path.isfile(os.path.join(source, 'config.json')):
            raise ConfigError(f'train.init_from={source} holds no run (no config.json); give the '
                              f'workdir of a trained run.')
        source_config, state, _ = evaluation.restore(source)
        example = train_state.example_batch(data.dataset_info(config.data))
        return train_state.weights_for(config, family, example, source_config, state)

    if os.path.isdir(os.path.join(workdir, 'checkpoints')):
        return load
    loaded = load()
    return lambda: loaded


# ------------------------------------------------------------------------------------------------
# Fit families (closed form or EM)

def fit_and_evaluate(config: ml_collections.ConfigDict, workdir: str, family,
                     lock: workdir_lib.Lock) -> dict[str, float]:
    """Fits a classical family on the whole train split, saves it, then evaluates it.

    A workdir that holds the fitted state is evaluated without refitting. Nothing is written before
    the fit succeeds, so a fit that fails on its input leaves no workdir behind.
    """
    record = families.provenance(family, config)  # an unknown or unprepared dataset fails here
    workdir_lib.check(config, workdir, families.resumable_keys(family), families.added_keys,
                      record)
    state = None
    if os.path.isdir(os.path.join(workdir, 'checkpoints')):
        lock.acquire()
        state = train_state.restore_fitted(checkpoint.manager(workdir, read_only=True))
    if state is None:
        state = _fit(config, workdir, family, lock, record)
    return evaluation.evaluate_state(config, family, workdir, state, train_state.FIT_STEP)


def _fit(config: ml_collections.ConfigDict, workdir: str, family, lock: workdir_lib.Lock,
         record: dict) -> PyTree:
    """Fits, then writes config.json, one metrics.jsonl line and the checkpoint of step 1."""
    # One pass over the split, dequantised with load_split's fixed noise (data.eval_seed).
    train_split = data.load_split(config.data, config.data.train_split)
    rng = jax.random.fold_in(train_state.model_key(config), train_state.INIT)
    start = time.perf_counter()
    params, fit_metrics = family.fit(config, train_split, rng)
    state = train_state.fitted_state(params)
    seconds = time.perf_counter() - start
    if not checkpoint.all_finite(state):
        raise FloatingPointError(
            f'the {config.family} fit produced non-finite parameters; see the model settings '
            f'(e.g. a larger model.reg_covar or fewer components) and rerun.')
    train_nll = family.evaluate(config, state['params'], train_split, rng)
    summary = {'fit_seconds': seconds, **fit_metrics,
               **{f'train_{k}': v for k, v in train_nll.items() if k.startswith('nll_')}}
    lock.acquire()
    workdir_lib.write_config(config, workdir, record)
    writer = workdir_lib.MetricWriter(workdir, 0, enabled=jax.process_index() == 0)
    mngr = checkpoint.manager(workdir, keep=1)
    with checkpoint.writing(mngr, workdir, writer.close):
        writer.write(train_state.FIT_STEP, summary)
        checkpoint.save(mngr, train_state.FIT_STEP, state)
    return state
