"""A deep config's record at one batch size: the trainer's step, its cost, samplers and loop.

Everything JAX runs here is the trainer's own code path: `train_state.init_state` and
`train_state.make_train_step` build the state and the jitted, sharded, donating step exactly as
`trainer.train_and_evaluate` does, on batches of the real data pipeline (`data.train_iterator`,
fetched before timing starts); the loop figure runs `train_and_evaluate` itself.

    compile_seconds      lowering + XLA compilation of the step (`jit(...).lower(...).compile()`)
    step_ms_*            median, p10, p90 over rounds x steps timed one by one, each ended by
                         `block_until_ready`, after warm-up steps; rounds alternate with the torch
                         reference's (same batches, same thread count), so load from other jobs
                         hits both
    flops_per_step       the compiled step's `cost_analysis()['flops']` (the per-device program)
                         times the number of devices
    speedup_vs_torch     the median over rounds of each round's torch median / jax median, with
                         its p10 and p90 (`speedup_vs_torch_p10`, `_p90`)
    achieved_tflops      flops_per_step / median step time; mfu = achieved / (peak x devices)
    peak_memory_bytes    the devices' peak_bytes_in_use where the backend reports it (the peak of
                         the process so far); on CPU the process's RSS high-water mark over this
                         record (Python, libraries and, where it runs, the torch side included)
    step_memory_bytes    the compiled step's own buffers, one device (`memory_analysis()`:
                         arguments + outputs - donated + temporaries), comparable across backends
    sample_images_per_second  `evaluation.make_sampler` (eval.batch_size images a call), compiled
                         first, per entry of eval.samplers where the family has them (DDPM,
                         EDM, flow matching: `with_sampler`); timed once per config, at its
                         first batch size, and shared by its other records
                         (sample_rates_batch_size: the record that timed them)
    profile              with --profile: one more step under jax.profiler, its HLO ops' total ms,
                         ms by kind (convolutions, dots, ...) and the slowest ops (hlo_profile.py)
    loop_steps_per_second  `trainer.train_and_evaluate` in a scratch workdir: the median of its
                         own logged steps_per_sec over `loop_intervals` logging intervals after
                         the first (which holds the compilation); its data stream (the trainer's
                         `iterator_hook`) ends the run after those steps, before any
                         checkpoint or evaluation. Figures and FID during training are off.
    step_ms_median_after_loop  the bare step timed again (`steps` steps) right after the loop
    loop_fraction_of_step_rate  loop rate x the mean of the bare step's medians before and after
                         the loop: the machine's speed drifts between sittings of a few seconds
                         (one interval against the earlier median alone swung from 82% to 134%
                         for one config between runs).
    loop_log_every       that interval: the config's own train.log_every, so logging weighs
                         what it weighs in training, cut to what fits in `loop_seconds` at the
                         step's rate (at least `loop_steps`). Logging costs 3-30 ms an interval
                         on CPU: over 20 steps of a 6 ms step that alone was 3-25% of the loop.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import tempfile
import time
from typing import Callable

import jax
import ml_collections
import numpy as np

from benchmarks import hardware, hlo_profile, torch_ref
from genmodels import data, evaluation, families, trainer
from genmodels.training import parallel, train_state

NUM_BATCHES = 4  # distinct real batches, cycled by both implementations


@dataclasses.dataclass(frozen=True)
class Settings:
    steps: int           # timed steps per implementation per round
    rounds: int          # rounds alternating the implementations
    warmup: int          # untimed steps of each implementation first
    loop_steps: int      # fewest steps per logged interval of the loop run
    loop_seconds: int    # longest a logged interval may take, when log_every's would take more
    loop_intervals: int  # timed logged intervals of the loop run (their median rate)
    sample_repeats: int  # timed sampler calls
    matmul_size: int     # n of the n x n matmul that measures the CPU peak
    torch: bool          # time the torch reference where one mirrors the config
    profile: bool        # trace one step: each HLO op's time (benchmarks/hlo_profile.py)


class Skipped(Exception):
    """This config cannot run here at this batch size (data not prepared, batch too large)."""


def with_batch_size(config: ml_collections.ConfigDict, batch_size: int
                    ) -> ml_collections.ConfigDict:
    config = copy.deepcopy(config)
    config.train.batch_size = batch_size
    return config


def measure(config: ml_collections.ConfigDict, batch_size: int, settings: Settings,
            sampled: tuple[int, dict | None] | None = None) -> dict:
    """The record of `config` at `batch_size` on all devices (keys: see the module docstring).
    `sampled`: (batch size, sample_images_per_second) of an earlier record of the same config, whose
    sampler rates this record reuses instead of timing them again."""
    config = with_batch_size(config, batch_size)
    family = families.validated(config)
    try:
        info = data.dataset_info(config.data)
        data.check_batch_size(batch_size, config.train.grad_accum_steps)
        data.check_batch_fits(config.data, batch_size, info.num_examples[config.data.train_split])
        batches = data.train_iterator(config.data, batch_size, config.data.seed)
    except (FileNotFoundError, ValueError) as e:
        raise Skipped(str(e)) from None
    host = [next(batches) for _ in range(NUM_BATCHES)]
    hardware.reset_peak_memory()
    mesh = parallel.make_mesh()
    state = train_state.init_state(config, family, mesh, train_state.example_batch(info))
    record, sides = {}, {}
    why_no_torch = torch_ref.why_not(config) if settings.torch else 'torch side off (--no_torch)'
    if why_no_torch is None:  # before the first JAX step, which donates `state`
        sides['torch'], record['torch_check'] = torch_ref.make(config, state, host)
    else:
        record['torch_check'] = None

    # 1. The step, as the trainer builds it; compiled here so that compilation is timed alone.
    step_fn = train_state.make_train_step(config, family, mesh, state)
    sharded = [parallel.shard_batch(mesh, b) for b in host]
    start = time.perf_counter()
    compiled = step_fn.lower(state, sharded[0]).compile()
    record['compile_seconds'] = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    record['flops_per_step'] = float(cost.get('flops', float('nan'))) * jax.device_count()
    mem = compiled.memory_analysis()
    record['step_memory_bytes'] = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                                   - mem.alias_size_in_bytes + mem.temp_size_in_bytes)

    def jax_step(i: int) -> None:
        nonlocal state
        state, metrics = compiled(state, sharded[i % NUM_BATCHES])
        jax.block_until_ready((state, metrics))

    sides = {'jax': jax_step, **sides}
    times = alternate(sides, settings)
    record['profile'] = (hlo_profile.summary(lambda: jax_step(0), compiled.as_text())
                         if settings.profile else None)
    ms = 1e3 * np.asarray(times['jax'])
    median = float(np.median(ms))
    record |= {'step_ms_median': median, 'step_ms_p10': float(np.percentile(ms, 10)),
               'step_ms_p90': float(np.percentile(ms, 90)),
               'examples_per_second': batch_size / (median / 1e3)}
    record['peak_memory_bytes'], record['peak_memory_source'] = hardware.peak_memory()
    peak, record['peak_source'] = hardware.peak_tflops(config.train.compute_dtype,
                                                       settings.matmul_size)
    record['achieved_tflops'] = record['flops_per_step'] / (median / 1e3) / 1e12
    record['peak_tflops'] = peak * jax.device_count() if peak else None
    record['mfu'] = record['achieved_tflops'] / record['peak_tflops'] if peak else None
    if 'torch' in sides:
        ratios = round_ratios(times['torch'], times['jax'], settings.steps)
        record |= {'torch_step_ms_median': float(np.median(times['torch'])) * 1e3,
                   'speedup_vs_torch': float(np.median(ratios)),
                   'speedup_vs_torch_p10': float(np.percentile(ratios, 10)),
                   'speedup_vs_torch_p90': float(np.percentile(ratios, 90)), 'torch_note': None}
    else:
        record |= {'torch_step_ms_median': None, 'speedup_vs_torch': None,
                   'speedup_vs_torch_p10': None, 'speedup_vs_torch_p90': None,
                   'torch_note': why_no_torch}

    # 2. Sampling, from the state the timed steps left: once per config, since the samplers do
    # not depend on the training batch size (eval.batch_size images a call).
    if sampled is None:
        params = families.eval_params(family, config, state)
        sampled = (batch_size, sample_rates(config, family, params, settings.sample_repeats))
    record['sample_rates_batch_size'], record['sample_images_per_second'] = sampled

    # 3. The real loop.
    record['loop_log_every'] = loop_interval(config, median / 1e3, settings)
    record['loop_steps_per_second'] = loop_rate(config, record['loop_log_every'],
                                                settings.loop_intervals)
    after = alternate({'jax': jax_step}, dataclasses.replace(settings, warmup=0, rounds=1))
    record['step_ms_median_after_loop'] = 1e3 * float(np.median(after['jax']))
    bare_ms = 0.5 * (median + record['step_ms_median_after_loop'])
    record['loop_fraction_of_step_rate'] = record['loop_steps_per_second'] * bare_ms / 1e3
    return record


def round_ratios(slow: list[float], fast: list[float], steps: int) -> np.ndarray:
    """median(slow) / median(fast) of each round of `alternate` (`steps` timed steps of each side
    per round): a slow stretch of the machine hits both sides of a round, not one side's median."""
    rounds = lambda t: np.median(np.reshape(t, (-1, steps)), axis=1)
    return rounds(slow) / rounds(fast)


def alternate(sides: dict[str, Callable[[int], None]], settings: Settings
              ) -> dict[str, list[float]]:
    """Seconds of each step of each side: `warmup` untimed steps each, then `rounds` rounds of
    `steps` timed steps of each side in turn."""
    count = {name: 0 for name in sides}
    times = {name: [] for name in sides}

    def run(name: str, timed: bool) -> None:
        start = time.perf_counter()
        sides[name](count[name])
        if timed:
            times[name].append(time.perf_counter() - start)
        count[name] += 1

    for name in sides:
        for _ in range(settings.warmup):
            run(name, timed=False)
    for _ in range(settings.rounds):
        for name in sides:
            for _ in range(settings.steps):
                run(name, timed=True)
    return times


def sample_rates(config: ml_collections.ConfigDict, family, params, repeats: int
                 ) -> dict[str, float] | None:
    """Images per second of each sampler (eval.batch_size images a call, median of `repeats`
    calls after compilation); None for a family that does not sample."""
    if not hasattr(family, 'sample'):
        return None
    variants = {'sample': config}
    if config.eval.get('samplers') and hasattr(family, 'with_sampler'):  # e.g. DDPM's ddim50
        variants = {name: family.with_sampler(config, name) for name in config.eval.samplers}
    key = jax.random.key(0)
    rates = {}
    for name, variant in variants.items():
        sampler = evaluation.make_sampler(variant, family).lower(params, key).compile()
        seconds = []
        for i in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(sampler(params, jax.random.fold_in(key, i)))
            seconds.append(time.perf_counter() - start)
        rates[name] = variant.eval.batch_size / float(np.median(seconds))
    return rates


def loop_interval(config: ml_collections.ConfigDict, step_seconds: float, settings: Settings
                  ) -> int:
    """Steps per logged interval of the loop figure: train.log_every, or as many steps as fit in
    settings.loop_seconds when that is fewer, and at least settings.loop_steps."""
    fit = int(settings.loop_seconds / step_seconds)
    return max(settings.loop_steps, min(config.train.log_every, fit))


class _LoopDone(Exception):
    """Raised by the data stream after the steps the loop figure needs."""


def loop_rate(config: ml_collections.ConfigDict, loop_steps: int, intervals: int) -> float:
    """Steps per second of `trainer.train_and_evaluate` itself (data pipeline, dispatch, metric
    logging): the median over `intervals` logged intervals of `loop_steps` steps, after a first
    interval of as many (compilation)."""
    config = copy.deepcopy(config)
    t = config.train
    # num_steps is part of the step's program (its schedules): changed only if too few to time.
    total = (1 + intervals) * loop_steps
    t.num_steps = max(t.num_steps, total + 1)
    t.log_every = loop_steps
    t.checkpoint_every = t.num_steps  # no checkpoint inside the timed steps
    t.figures_every = t.fid_every = 0

    def stop_after_timed_steps(batches):
        for _ in range(total):
            yield next(batches)
        raise _LoopDone

    with tempfile.TemporaryDirectory(prefix='genmodels-bench-loop-') as workdir:
        try:
            trainer.train_and_evaluate(config, workdir, iterator_hook=stop_after_timed_steps)
        except _LoopDone:
            pass
        with open(os.path.join(workdir, 'metrics.jsonl')) as f:
            logged = [json.loads(line) for line in f]
    rates = [r['steps_per_sec'] for r in logged if 'steps_per_sec' in r]
    return float(np.median(rates[1:1 + intervals]))
