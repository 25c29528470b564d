"""Orbax checkpoints of the training state: periodic and final saves, keep N, restore the latest.

A state is saved only if every array in it is finite, so the latest checkpoint is always usable.
Each checkpoint records the sha256 of every array's bytes in its step metadata (written with the
checkpoint, so a checkpoint and its digests appear together or not at all), and restore verifies
them: Orbax itself does not notice bytes overwritten in place, which can restore as NaNs.
`restore_newest_good` resumes from the newest checkpoint that reads and verifies, moving newer ones
that do not aside (renamed into checkpoints_unreadable/, never deleted).
A deep family's state is restored onto the tree its `init` would build; a fitted state, whose shapes
depend on the data (a KDE keeps its training points, EM's trace has one entry per iteration), onto
the tree recorded in the checkpoint's own metadata (`restore_as_saved`).

Preemption (`StopRequests`, at the end of this module): on SIGTERM (what schedulers send before
preemption) or SIGINT (Ctrl-C) the run stops at a step boundary. The trainer asks
`should_stop(step)` after every step; when it says yes, the trainer saves a checkpoint of that
step, waits for it to be complete and raises `Preempted`, which train.py turns into one line and
exit code `EXIT_CODE` (75, EX_TEMPFAIL: try again). Rerunning the same command resumes from that
checkpoint and ends bit for bit where an uninterrupted run ends.

One process: handlers for both signals only record them, so a second signal during the save does
not interrupt it. Several processes: SIGTERM goes through JAX's preemption service
(`multihost_utils.reached_preemption_sync_point`), which picks one step at which every process
stops, whichever of them was signalled; SIGINT keeps its default there.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

PyTree = Any


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or would hold non-finite values. `reason`: the short form,
    without advice."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def manager(workdir: str, keep: int | None = None, read_only: bool = False
            ) -> ocp.CheckpointManager:
    """`keep`: how many checkpoints a writing manager keeps (None: all; a reader deletes none)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                           read_only=read_only)
    # The handler is named so that `item_metadata` can read a checkpoint's tree before restoring.
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, 'checkpoints')),
                                 options=options, item_handlers=ocp.StandardCheckpointHandler())


def all_finite(tree: PyTree) -> bool:
    """Whether every floating-point array in `tree` is finite, checked on host copies. An eager
    jnp.isfinite per array compiles one program per shape, seconds for a model's conv, dense and
    bias shapes (measured: docs/benchmarks.md)."""
    leaves = [x for x in jax.tree.leaves(tree)
              if hasattr(x, 'dtype') and jnp.issubdtype(x.dtype, jnp.inexact)]
    return all(np.isfinite(x).all() for x in jax.device_get(leaves))


def digests(tree: PyTree) -> dict[str, str]:
    """sha256 of each leaf's dtype, shape and bytes, keyed by its path in the tree ('a/0/count':
    the same whether the tree holds optax's named tuples or, restored as saved, dicts and lists)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]:
        x = np.ascontiguousarray(leaf)
        h = hashlib.sha256(f'{x.dtype.str}{x.shape}'.encode())
        h.update(x.tobytes())
        out['/'.join(str(_key_name(k)) for k in path)] = h.hexdigest()
    return out


def _key_name(key) -> str | int:
    for attr in ('key', 'name', 'idx'):  # DictKey / FlattenedIndexKey, GetAttrKey, SequenceKey
        if hasattr(key, attr):
            return getattr(key, attr)
    return str(key)


def save(mngr: ocp.CheckpointManager, step: int, state: PyTree) -> None:
    host = jax.device_get(state)  # one copy for both checks
    if not all_finite(host):
        raise CheckpointError(f'refusing to save a non-finite state at step {step}.')
    mngr.save(step, args=ocp.args.StandardSave(state), force=True,
              custom_metadata={'sha256': digests(host)})


def restore(mngr: ocp.CheckpointManager, abstract_state: PyTree, step: int | None = None
            ) -> tuple[PyTree, int] | tuple[None, None]:
    """Restores `step` (default: the latest) onto the shardings of `abstract_state` and verifies
    its digests (checkpoints saved before digests were recorded are restored unverified)."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None, None
    try:
        state = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
        expected = (mngr.metadata(step).custom_metadata or {}).get('sha256')
    except Exception as e:  # Orbax raises many types for unreadable or mismatched files.
        _ignore_abandoned_reads()
        raise _unreadable(mngr, step, e) from e
    if expected is not None:
        actual = digests(state)
        wrong = sorted(k for k in expected.keys() | actual.keys()
                       if expected.get(k) != actual.get(k))
        if wrong:
            raise _unreadable(mngr, step, f'{len(wrong)} arrays fail their sha256 (first: '
                              f'{wrong[0]}); its bytes changed after it was written')
    return state, step


def restore_newest_good(mngr: ocp.CheckpointManager, abstract_state: PyTree
                        ) -> tuple[PyTree, int] | tuple[None, None]:
    """Restores the newest checkpoint that reads and verifies. Newer ones that do not are moved
    into checkpoints_unreadable/ beside checkpoints/, each reported in one line. Raises
    CheckpointError, moving nothing, if there are checkpoints and none of them is good."""
    failures = []
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            state, _ = restore(mngr, abstract_state, step)
        except CheckpointError as e:
            failures.append((step, e))
            continue
        for bad, error in failures:
            logging.warning('%s; moved it to %s and resumed from step %d.', error.reason,
                            _move_aside(mngr, bad), step)
        mngr.reload()
        return state, step
    if failures:
        step, error = failures[0]
        raise CheckpointError(
            f'no checkpoint in {mngr.directory} can be restored ({error.reason}); move that '
            f'directory aside to start the run over, or train in a new --workdir.')
    return None, None


def _ignore_abandoned_reads() -> None:
    """A failed restore abandons its other pending TensorStore reads; each one, completing after
    Orbax's event loop has closed, reports 'Event loop is closed' as an unraisable exception (dozens
    of tracebacks after the real error). Those reports, and only those, are dropped from now on."""
    hook = sys.unraisablehook
    if getattr(hook, 'drops_closed_loop_reports', False):
        return

    def filtered(report):
        if not (isinstance(report.exc_value, RuntimeError)
                and str(report.exc_value) == 'Event loop is closed'):
            hook(report)

    filtered.drops_closed_loop_reports = True
    sys.unraisablehook = filtered


def _move_aside(mngr: ocp.CheckpointManager, step: int) -> str:
    """Renames checkpoints/<step> to checkpoints_unreadable/<step>[.N] (process 0; all wait)."""
    source = os.path.join(str(mngr.directory), str(step))
    parent = os.path.join(os.path.dirname(str(mngr.directory)), 'checkpoints_unreadable')
    dest, n = os.path.join(parent, str(step)), 0
    while os.path.exists(dest):
        n += 1
        dest = os.path.join(parent, f'{step}.{n}')
    if jax.process_index() == 0:
        os.makedirs(parent, exist_ok=True)
        os.replace(source, dest)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f'genmodels_move_aside_{step}')
    return dest


def restore_as_saved(mngr: ocp.CheckpointManager, sharding: jax.sharding.Sharding,
                     step: int | None = None) -> tuple[PyTree, int] | tuple[None, None]:
    """Restores `step` (default: the latest) with the tree, shapes and dtypes it was saved with,
    onto `sharding`."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None, None
    try:
        saved = mngr.item_metadata(step).tree
    except Exception as e:  # Orbax raises many types for unreadable files.
        raise _unreadable(mngr, step, e) from e
    return restore(mngr, abstract(saved, sharding), step)


def _unreadable(mngr: ocp.CheckpointManager, step: int, e: Exception | str) -> CheckpointError:
    path = os.path.join(str(mngr.directory), str(step))
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    return CheckpointError(
        f'checkpoint at step {step} ({path}) cannot be restored: {first_line}. If it is '
        f'corrupt, move that directory aside to resume from the previous checkpoint.',
        reason=f'checkpoint at step {step} cannot be restored ({first_line})')


def abstract(tree: PyTree, sharding: jax.sharding.Sharding) -> PyTree:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


# ------------------------------------------------------------------------------------------------
# Preemption

EXIT_CODE = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Training stopped on a signal after saving a checkpoint of `step`."""

    def __init__(self, signal_name: str, step: int, checkpoint_dir: str):
        super().__init__(f'{signal_name} received: saved a checkpoint of step {step} in '
                         f'{checkpoint_dir}; rerun the same command to resume from it.')
        self.step = step


class StopRequests:
    """A context manager that records SIGTERM and SIGINT while training runs, then restores the
    previous handlers. Outside the main thread (where Python cannot install handlers) and with
    several processes, signals are left to their defaults and JAX's service."""

    def __init__(self):
        self.received: list[str] = []
        self._previous: dict = {}

    def __enter__(self) -> StopRequests:
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._record) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _record(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received:
            logging.warning('%s received while stopping; still saving the checkpoint.', name)
        self.received.append(name)

    def should_stop(self, step: int) -> bool:
        if jax.process_count() > 1:
            if multihost_utils.reached_preemption_sync_point(step):
                self.received.append('SIGTERM')
                return True
            return False
        return bool(self.received)

    @property
    def signal_name(self) -> str:
        return self.received[0] if self.received else 'a stop request'
