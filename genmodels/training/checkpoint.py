"""Orbax checkpoints of the training state: periodic and final saves, keep N, restore the latest.

A state is saved only if every array in it is finite, so the latest checkpoint is always usable.
Each checkpoint records the sha256 of every array's bytes in its step metadata (written with the
checkpoint, so a checkpoint and its digests appear together or not at all), and restore verifies
them: Orbax itself does not notice bytes overwritten in place, which can restore as NaNs. A
checkpoint whose digests are missing cannot be verified and counts as unreadable.
`restore_newest_good` resumes from the newest checkpoint that reads and verifies, moving newer ones
that do not aside (renamed into checkpoints_unreadable/, never deleted); a reader (eval.py, possibly
while a run writes and rotates its checkpoints) uses `restore_newest_readable`, which moves nothing
and, when the one it reads disappears or fails, says so and tries the next newest.
A write that finds the disk full (or a quota or file-size limit reached) becomes `NoSpaceError`,
one line naming the newest complete checkpoint.
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

import contextlib
import errno
import hashlib
import logging as py_logging
import os
import signal
import sys
import threading
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from genmodels.training import parallel

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
    absl_logger = logging.get_absl_logger()
    level = absl_logger.level
    if read_only:  # Orbax warns that a reader is read-only, on every evaluation
        absl_logger.setLevel(py_logging.ERROR)
    try:
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                               read_only=read_only)
        # The handler is named so that `item_metadata` can read a checkpoint's tree first.
        return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, 'checkpoints')),
                                     options=options, item_handlers=ocp.StandardCheckpointHandler())
    finally:
        absl_logger.setLevel(level)


def all_finite(tree: PyTree) -> bool:
    """Whether every floating-point array in `tree` is finite, checked on host copies. An eager
    jnp.isfinite per array compiles one program per shape, seconds for a model's conv, dense and
    bias shapes (measured: docs/benchmarks.md)."""
    leaves = [x for x in jax.tree.leaves(tree)
              if hasattr(x, 'dtype') and jnp.issubdtype(x.dtype, jnp.inexact)]
    return all(np.isfinite(x).all() for x in parallel.to_host(leaves))


def digests(tree: PyTree) -> dict[str, str]:
    """sha256 of each leaf's dtype, shape and bytes, keyed by its path in the tree ('a/0/count':
    the same whether the tree holds optax's named tuples or, restored as saved, dicts and lists)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(parallel.to_host(tree))[0]:
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
    host = parallel.to_host(state)  # one copy for both checks
    if not all_finite(host):
        raise CheckpointError(f'refusing to save a non-finite state at step {step}.')
    mngr.save(step, args=ocp.args.StandardSave(state), force=True,
              custom_metadata={'sha256': digests(host)})


METADATA_FILE = '_CHECKPOINT_METADATA'  # Orbax's step metadata, where `save` puts the digests


def restore(mngr: ocp.CheckpointManager, abstract_state: PyTree, step: int | None = None
            ) -> tuple[PyTree, int] | tuple[None, None]:
    """Restores `step` (default: the latest) onto the shardings of `abstract_state` and verifies
    its digests; a checkpoint without them is unverifiable, and refused like an unreadable one."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None, None
    drop_closed_loop_reports()
    where = os.path.join(str(mngr.directory), str(step))
    if not os.path.isdir(where):
        raise _unreadable(mngr, step, 'it no longer exists; a running job\'s rotation deletes '
                          'its oldest checkpoints')
    try:
        expected = None
        if os.path.exists(os.path.join(where, METADATA_FILE)):
            expected = (mngr.metadata(step).custom_metadata or {}).get('sha256')
        if expected is None:
            raise _unreadable(mngr, step, f'its sha256 digests (in {METADATA_FILE}) are missing')
        state = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except CheckpointError:
        raise
    except Exception as e:  # Orbax raises many types for unreadable or mismatched files.
        quiet_background_failures()
        raise _unreadable(mngr, step, e) from e
    actual = digests(state)
    wrong = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
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
        raise _none_restorable(mngr, failures[0][1], 'move that directory aside to start the run '
                               'over, or train in a new --workdir')
    return None, None


READ_ATTEMPTS = 10  # a reader's tries: each failure moves on to the newest step not yet tried


def restore_newest_readable(mngr: ocp.CheckpointManager,
                            restore_step: Callable[[int], PyTree]
                            ) -> tuple[PyTree, int] | tuple[None, None]:
    """For a reader: `restore_step(step)` of the newest checkpoint that reads and verifies, moving
    nothing. The steps are listed again after each failure, so a checkpoint deleted by a running
    job's rotation while it was read is followed by the newest one there now; each failure is
    reported in one line. Raises CheckpointError if there are checkpoints and none is readable."""
    tried, failures = set(), []
    for _ in range(READ_ATTEMPTS):
        mngr.reload()
        left = [s for s in mngr.all_steps() if s not in tried]
        if not left:
            break
        step = max(left)
        tried.add(step)
        try:
            state = restore_step(step)
        except CheckpointError as e:
            failures.append((step, e))
            continue
        for _, error in failures:
            logging.warning('%s; read step %d instead.', error.reason, step)
        return state, step
    if failures:
        raise _none_restorable(mngr, failures[0][1], 'train it again in a new --workdir, or '
                               'restore its checkpoints')
    return None, None


def _none_restorable(mngr, first: CheckpointError, advice: str) -> CheckpointError:
    return CheckpointError(f'no checkpoint in {mngr.directory} can be restored ({first.reason}); '
                           f'{advice}.')


class _DropBackgroundNoise(py_logging.Filter):
    """Drops the log records of Orbax's and asyncio's background tasks after a failed read or
    write: each abandoned task logs its own traceback, hundreds of lines after the one error that
    matters, which the caller reports."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno < py_logging.ERROR and not record.exc_info


def _is_closed_loop(value: BaseException | None) -> bool:
    return isinstance(value, RuntimeError) and str(value) == 'Event loop is closed'


def drop_closed_loop_reports() -> None:
    """A failed read abandons its other pending TensorStore reads; each one, completing after
    Orbax's event loop has closed, reports 'Event loop is closed' (as an unraisable exception or
    through sys.excepthook from a callback thread), possibly before the failure reaches the caller.
    Those reports, and only those, are dropped from the first read on."""
    if getattr(sys.excepthook, 'drops_closed_loop_reports', False):
        return
    except_hook, unraisable_hook = sys.excepthook, sys.unraisablehook

    def filtered_except(kind, value, tb):
        if not _is_closed_loop(value):
            except_hook(kind, value, tb)

    def filtered_unraisable(report):
        if not _is_closed_loop(report.exc_value):
            unraisable_hook(report)

    filtered_except.drops_closed_loop_reports = True
    sys.excepthook, sys.unraisablehook = filtered_except, filtered_unraisable


def quiet_background_failures() -> None:
    """After a failed restore or save: the pending TensorStore reads and writes it abandoned, and
    Orbax's and asyncio's tasks, report their failures as they end, as unraisable exceptions,
    logged tracebacks and never-awaited coroutines (dozens to hundreds of lines after the real
    error). Those reports are dropped from now on; the caller reports the error."""
    drop_closed_loop_reports()
    warnings.filterwarnings('ignore', message='coroutine .* was never awaited',
                            category=RuntimeWarning)
    for name in ('asyncio', 'absl', 'orbax', 'jax._src.distributed'):
        logger = py_logging.getLogger(name)
        if not any(isinstance(f, _DropBackgroundNoise) for f in logger.filters):
            logger.addFilter(_DropBackgroundNoise())
    if getattr(sys.unraisablehook, 'drops_background_reports', False):
        return
    unraisable_hook, thread_hook = sys.unraisablehook, threading.excepthook
    background = (RuntimeError, OSError, ValueError)

    def filtered(report):
        if not isinstance(report.exc_value, background):
            unraisable_hook(report)

    def filtered_thread(args):  # a log writer's flush thread failing the same way
        if not isinstance(args.exc_value, background):
            thread_hook(args)

    filtered.drops_background_reports = True
    sys.unraisablehook, threading.excepthook = filtered, filtered_thread


# ------------------------------------------------------------------------------------------------
# A full disk

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
NO_SPACE_TEXTS = ('no space left on device', 'disk quota exceeded', 'file too large')


class NoSpaceError(OSError):
    """A write failed for want of space; the message names the newest complete checkpoint."""


def is_no_space(error: BaseException) -> bool:
    """Whether `error`, or an exception it was raised from, is a write that found no space: an
    OSError with ENOSPC, EDQUOT or EFBIG, or TensorStore's report of one (a message only)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
            return True
        if any(text in str(error).lower() for text in NO_SPACE_TEXTS):
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def writing(mngr: ocp.CheckpointManager, workdir: str, *closers: Callable[[], None]):
    """Runs the body, then waits for the pending checkpoint and calls each closer. On any error,
    each of those still runs, its own failure dropped, so the body's error is the one reported
    (closing a log on a full disk fails too); a write that found no space becomes NoSpaceError."""
    try:
        yield
        mngr.wait_until_finished()
        for close in closers:
            close()
    except BaseException as e:
        for close in (mngr.wait_until_finished, *closers):
            try:
                close()
            except Exception:  # noqa: BLE001 - the error being raised is the one to report
                pass
        if is_no_space(e):
            quiet_background_failures()
            raise NoSpaceError(_no_space_message(mngr, workdir)) from None
        raise


def _no_space_message(mngr: ocp.CheckpointManager, workdir: str) -> str:
    try:
        mngr.reload()
        step = mngr.latest_step()
    except Exception:  # noqa: BLE001 - the directory may be unreadable too
        step = None
    where = ('no checkpoint was completed, and rerunning the same command starts over'
             if step is None else
             f'the newest complete checkpoint is step {step} '
             f'({os.path.join(str(mngr.directory), str(step))}), and rerunning the same command '
             f'resumes from it')
    return (f'no space left to write in {workdir} (the disk is full, or a quota or file-size limit '
            f'was reached); {where} once space is freed.')


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
        quiet_background_failures()
        raise _unreadable(mngr, step, e) from e
    return restore(mngr, abstract(saved, jax.tree.map(lambda _: sharding, saved)), step)


def _unreadable(mngr: ocp.CheckpointManager, step: int, e: Exception | str) -> CheckpointError:
    path = os.path.join(str(mngr.directory), str(step))
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    return CheckpointError(
        f'checkpoint at step {step} ({path}) cannot be restored: {first_line}. If it is '
        f'corrupt, move that directory aside to resume from the previous checkpoint.',
        reason=f'checkpoint at step {step} cannot be restored ({first_line})')


def abstract(tree: PyTree, shardings: PyTree) -> PyTree:
    """ShapeDtypeStructs of `tree`'s leaves, each on its sharding in `shardings`."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree,
                        shardings)


# ------------------------------------------------------------------------------------------------
# Preemption

EXIT_CODE = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(BaseException):
    """Training stopped on a signal; the message says what was saved and how to go on. A
    BaseException, like KeyboardInterrupt: raised at once from a signal handler (see
    `StopRequests.at_once`), it must pass through the `except Exception` of a checkpoint read
    instead of marking a good checkpoint unreadable."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else 'stopped'


def preempted_at(signal_name: str, step: int, checkpoint_dir: str) -> Preempted:
    return Preempted(f'{signal_name} received: saved a checkpoint of step {step} in '
                     f'{checkpoint_dir}; rerun the same command to resume from it.')


class StopRequests:
    """A context manager that records SIGTERM and SIGINT while training runs, then restores the
    previous handlers. Outside the main thread (where Python cannot install handlers) and with
    several processes, signals are left to their defaults and JAX's service.

    Between steps a signal is only recorded, and the loop stops at the next step boundary. Where
    there is no step to stop at (before the loop, during the final evaluation), set `at_once` to
    the rest of the message (what was saved, how to go on): a signal then raises Preempted there
    and then."""

    def __init__(self):
        self.received: list[str] = []
        self._previous: dict = {}
        self.at_once: str | None = None

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
        if self.at_once is not None and not self.received:
            self.received.append(name)
            raise Preempted(f'{name} received {self.at_once}')
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
