"""Stopping on SIGTERM (what schedulers send before preemption) or SIGINT (Ctrl-C) at a step boundary.

The trainer asks `should_stop(step)` after every step; when it says yes, the trainer saves a
checkpoint of that step, waits for it to be complete and raises `Preempted`, which train.py turns
into one line and exit code `EXIT_CODE` (75, EX_TEMPFAIL: try again). Rerunning the same command
resumes from that checkpoint and ends bit for bit where an uninterrupted run ends.

One process: handlers for both signals only record them, so a second signal during the save does
not interrupt it. Several processes: SIGTERM goes through JAX's preemption service
(`multihost_utils.reached_preemption_sync_point`), which picks one step at which every process
stops, whichever of them was signalled; SIGINT keeps its default there.
"""

from __future__ import annotations

import signal
import threading

import jax
from absl import logging
from jax.experimental import multihost_utils

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
