"""The run directory before training starts: is it writable, and does it hold this run?

A workdir that holds a run (its config.json) resumes only with the same config, apart from the
keys that may change on resume (`config.RESUMABLE_KEYS` and the family's own), and on the same data
and objective: provenance.json records what identifies them (`genmodels.families.provenance`: a
digest of a text file or image set, a TFDS dataset's version and sizes, the sha256 of an objective
given by path). config.json and provenance.json are written atomically, and only once every check
of the input has passed, so bad input never leaves a half-written workdir. One run at a time: a
running train.py holds `Lock` (an flock on train.lock, which the kernel releases when the process
ends, however it ends), and a second one on the same workdir is refused in one line.

What the run then writes there: one JSON object per logged step in metrics.jsonl, TensorBoard event
files (scalars, and the progress figures as images), and eval.json (`write_json`). Event files are
written with tensorboardX, so neither writing nor `tensorboard --logdir` needs TensorFlow.
`TrainingLog` is what the loop reports to: it checks every step's metrics for NaN/Inf, averages
them over each log interval, and writes the average to metrics.jsonl, TensorBoard and the progress
display (a bar on a terminal, one plain line per interval otherwise).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from typing import Any, Callable, TextIO

import jax
import matplotlib.image
import ml_collections
import numpy as np
import tensorboardX
import tqdm
from absl import logging

from genmodels import config as config_lib


class WorkdirError(ValueError):
    """The workdir holds a run with a different config, or cannot be written."""


def flatten(d: dict, prefix: str = '') -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; tuples become lists, as in config.json."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten(v, f'{prefix}{k}.')
        else:
            out[f'{prefix}{k}'] = list(v) if isinstance(v, tuple) else v
    return out


PROVENANCE = 'provenance.json'


def check(config: ml_collections.ConfigDict, workdir: str, resumable: tuple[str, ...],
          family_keys=None, provenance: dict[str, Any] | None = None) -> None:
    """Raises WorkdirError if `workdir` cannot be written, or holds a run whose config differs
    beyond the `resumable` keys, or whose recorded provenance.json differs from `provenance`.
    `family_keys`: family name -> the keys it added since (genmodels.families.added_keys), filled
    into the saved config as config.read_saved does."""
    try:
        saved = config_lib.read_saved(workdir, family_keys)
    except ValueError as e:
        raise WorkdirError(str(e)) from None
    check_writable(workdir)
    if saved is None:
        return
    old = flatten(saved)
    new = flatten(json.loads(config_lib.to_json(config)))
    changed = sorted(k for k in set(old) | set(new)
                     if old.get(k) != new.get(k) and k not in resumable)
    if changed:
        raise WorkdirError(
            f'{workdir} holds a run with a different config ({", ".join(changed[:5])}); '
            f'use a new --workdir, or the same config to resume.')
    _check_provenance(workdir, provenance or {})


def _check_provenance(workdir: str, provenance: dict[str, Any]) -> None:
    path = os.path.join(workdir, PROVENANCE)
    if not os.path.exists(path):  # a run saved before provenance was recorded
        return
    try:
        with open(path) as f:
            saved = flatten(json.load(f))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise WorkdirError(f'{path} is not readable JSON ({e}); use a new --workdir, or restore '
                           f'that file.') from None
    now = flatten(json.loads(json.dumps(provenance, default=list)))
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if changed:
        key = changed[0]
        raise WorkdirError(
            f'{workdir} was trained on other inputs than this run\'s ({key}: '
            f'{saved.get(key)!r} then, {now.get(key)!r} now); use a new --workdir for them, or '
            f'restore the data or objective file it was trained with.')


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


def write_config(config: ml_collections.ConfigDict, workdir: str,
                 provenance: dict[str, Any] | None = None) -> None:
    """workdir/config.json and provenance.json, each written atomically (by the first process
    only)."""
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        _write_atomic(os.path.join(workdir, 'config.json'), config_lib.to_json(config))
        write_json(os.path.join(workdir, PROVENANCE), provenance or {})


class Lock:
    """One train.py per workdir. `acquire` (after the input's checks, before the first write)
    takes an exclusive flock on workdir/train.lock and records the holder in it; a second
    process's `acquire` raises WorkdirError naming that holder. The kernel drops the lock when its
    process ends, however it ends, so a killed run never blocks the next one. Only the first
    process of a multi-process run locks."""

    def __init__(self, workdir: str):
        self.workdir, self._file = workdir, None

    def acquire(self) -> None:
        if self._file is not None or jax.process_index() != 0:
            return
        os.makedirs(self.workdir, exist_ok=True)
        f = open(os.path.join(self.workdir, 'train.lock'), 'a+')
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or 'another process'
            f.close()
            raise WorkdirError(f'{self.workdir} is in use by {holder}; wait for it to end, or '
                               f'train in another --workdir.') from None
        f.seek(0)
        f.truncate()
        f.write(f'train.py (process {os.getpid()} on {socket.gethostname()}, started '
                f'{time.strftime("%Y-%m-%d %H:%M:%S")})\n')
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def write_json(path: str, record: dict[str, Any]) -> None:
    """`record` as indented JSON with sorted keys, written atomically."""
    _write_atomic(path, json.dumps(record, indent=2, sort_keys=True))


def _write_atomic(path: str, text: str) -> None:
    """A reader of `path` sees the old text or the new, never part of it."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------
# Logs

class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the message names the step range and the last good checkpoint."""


class MetricWriter:
    """Appends to a run's logs; on resume from `start_step`, first drops lines logged after it
    (a killed run logs steps past its last checkpoint, and the resumed run logs them again)."""

    def __init__(self, workdir: str, start_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        if enabled:
            path = os.path.join(workdir, 'metrics.jsonl')
            _truncate_after(path, start_step)
            self._jsonl = open(path, 'a')
            self._tb = tensorboardX.SummaryWriter(logdir=workdir, flush_secs=30)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {'step': step, 'time': time.time(), **scalars}
        self._jsonl.write(json.dumps(record) + '\n')
        self._jsonl.flush()
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, step)

    def write_image(self, step: int, tag: str, path: str) -> None:
        """A saved figure (PNG) as a TensorBoard image under `tag`."""
        if self.enabled:
            pixels = matplotlib.image.imread(path)  # float [H, W, 3 or 4] in [0, 1]
            self._tb.add_image(tag, pixels[..., :3], step, dataformats='HWC')

    def close(self) -> None:
        if self.enabled:
            self.enabled = False  # once: the trainer closes again after an error
            self._jsonl.close()
            self._tb.close()


def _truncate_after(path: str, step: int) -> None:
    """Keeps the lines of steps <= `step`. A torn last line (a crash mid-write) is dropped with a
    warning; an unreadable line elsewhere is an error naming the file and line."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    kept = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                logging.warning('%s: dropped its torn last line (a crash while writing it).', path)
                break
            raise ValueError(f'{path}, line {i + 1}, is not JSON; fix or remove that line, '
                             f'then rerun to resume.') from None
        if record['step'] <= step:
            kept.append(line if line.endswith('\n') else line + '\n')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.writelines(kept)
    os.replace(tmp, path)


def check_finite(history: list[dict[str, np.ndarray]], first_step: int,
                 last_checkpoint: Callable[[], int | None]) -> None:
    """Every float metric of every step in `history` (steps first_step + 1, ...), all elements
    (every seed lane), must be finite; else NonFiniteLossError naming the steps and the last good
    checkpoint (`last_checkpoint()`: its step, or None)."""
    for i, m in enumerate(history):
        bad = [k for k, v in m.items()
               if np.issubdtype(np.asarray(v).dtype, np.floating) and not np.all(np.isfinite(v))]
        if bad:
            last = last_checkpoint()
            where = f'step {last}' if last is not None else 'none saved yet'
            value = np.asarray(m[bad[0]])
            shown = value.item() if value.size == 1 else value.tolist()
            raise NonFiniteLossError(
                f'{", ".join(bad)} became non-finite ({bad[0]} = {shown}) between steps '
                f'{first_step} and {first_step + i + 1}; last good checkpoint: {where}. Rerun '
                f'with a lower learning rate (--config.optimizer.learning_rate, which may change '
                f'on resume) to resume from it, or set grad_clip_norm in a new --workdir.')


def summarize(history: list[dict[str, np.ndarray]], num_seeds: int) -> dict[str, float]:
    """Mean of each metric over the logged steps (and seeds); with several seeds, also
    `<key>/seed<i>` (the mean over steps of lane i)."""
    summary = {}
    for key in history[-1]:
        values = np.stack([np.asarray(h[key], np.float64) for h in history])  # [T] or [T, S]
        summary[key] = float(np.mean(values))
        if num_seeds > 1:
            summary |= {f'{key}/seed{i}': float(v) for i, v in enumerate(values.mean(axis=0))}
    return summary


class Progress:
    """A redrawn bar on a terminal; where the output is not a terminal (CI, nohup, SLURM), one plain
    line per log interval instead of carriage-return redraws that pile up in one long line."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool,
                 stream: TextIO | None = None):
        self.total, self.last, self.desc, self.enabled = total, initial, desc, enabled
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.bar = None
        if enabled and self.stream.isatty():
            self.bar = tqdm.tqdm(total=total, initial=initial, dynamic_ncols=True, desc=desc,
                                 file=self.stream)

    def update(self, step: int, shown: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f'{v:.3f}' for k, v in shown.items()})
            self.bar.update(step - self.last)
        elif self.enabled:
            values = ' '.join(f'{k}={v:.3f}' for k, v in shown.items())
            elapsed = time.perf_counter() - self.start
            print(f'{self.desc} step {step}/{self.total} ({100 * step / self.total:.0f}%) '
                  f'{values} [{elapsed:.0f} s]', file=self.stream, flush=True)
        self.last = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TrainingLog:
    """What the training loop reports to. `add` each step's metrics (arrays still on device);
    `log` a step to check the pending steps for NaN/Inf and write their mean to metrics.jsonl,
    TensorBoard and the progress display. `last_checkpoint()` gives the step a NaN message names."""

    def __init__(self, workdir: str, start: int, num_steps: int, *, desc: str,
                 shown: tuple[str, ...], num_seeds: int,
                 last_checkpoint: Callable[[], int | None],
                 enabled: bool = True):
        self.writer = MetricWriter(workdir, start, enabled=enabled)
        self.progress = Progress(num_steps, start, desc, enabled)
        self.shown, self.num_seeds, self.last_checkpoint = shown, num_seeds, last_checkpoint
        self.pending: list[dict[str, jax.Array]] = []
        self.last_logged, self.t_last = start, time.perf_counter()

    def add(self, metrics: dict[str, jax.Array]) -> None:
        if self.pending:
            # At most two steps in flight. JAX dispatches asynchronously, so without this the
            # loop runs up to log_every steps ahead of the computation, and a stop request would
            # wait for all of them (minutes for a slow step, past a scheduler's grace period)
            # before its checkpoint is written.
            jax.block_until_ready(self.pending[-1])
        self.pending.append(metrics)

    def log(self, step: int) -> None:
        history = jax.device_get(self.pending)
        check_finite(history, self.last_logged, self.last_checkpoint)
        now = time.perf_counter()
        summary = summarize(history, self.num_seeds)
        summary['steps_per_sec'] = (step - self.last_logged) / (now - self.t_last)
        self.writer.write(step, summary)
        self.progress.update(step, {k: summary[k] for k in self.shown if k in summary})
        self.pending, self.last_logged, self.t_last = [], step, now

    def check_pending(self) -> None:
        """Before a checkpoint: never save past an unchecked metric."""
        if self.pending:
            check_finite(jax.device_get(self.pending), self.last_logged, self.last_checkpoint)

    def close(self) -> None:
        self.progress.close()
        self.writer.close()
