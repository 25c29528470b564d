"""SIGTERM to one of two jax.distributed processes: both stop at one step with a checkpoint, and
rerunning both resumes and ends bit for bit where an uninterrupted two-process run ends.

    .venv/bin/python -m tools.check_preemption_multiprocess

Two local processes of two CPU devices each (gloo collectives) run a small VAE through train.py
for 60 steps, as tests/test_trainer.py's kill test does with one process. Not in the test suite:
its three launches of two processes cost about a minute, and the suite's time is spent on the
one-process signal tests and the two-process equality test. Prints what it saw; exits 1 if any
check fails.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import portpicker

from genmodels.data import bundled
from genmodels.training import checkpoint
from tests import test_trainer

NUM_STEPS = 60


def launch(data_dir: str, workdir: str) -> list[subprocess.Popen]:
    port = portpicker.pick_unused_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, JAX_PLATFORMS='cpu',
                   XLA_FLAGS='--xla_force_host_platform_device_count=2',
                   JAX_COORDINATOR_ADDRESS=f'localhost:{port}', JAX_NUM_PROCESSES='2',
                   JAX_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen(test_trainer._cli_tiny_vae(data_dir, workdir, NUM_STEPS),
                                      cwd=test_trainer.ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    """(exit code, last stderr line) of each process."""
    out = []
    for p in procs:
        _, err = p.communicate(timeout=900)
        lines = err.strip().splitlines()
        out.append((p.returncode, lines[-1] if lines else ''))
    return out


def main() -> int:
    root = tempfile.mkdtemp(prefix='preemption_multiprocess_')
    data_dir = os.path.join(root, 'tensorflow_datasets')
    for name in bundled.BUNDLED:
        bundled.prepare(name, data_dir)
    straight, stopped = os.path.join(root, 'straight'), os.path.join(root, 'stopped')
    ok = all(code == 0 for code, _ in finish(launch(data_dir, straight)))

    procs = launch(data_dir, stopped)
    end = time.monotonic() + 600
    while len(test_trainer.logged_steps(stopped)) < 3 and time.monotonic() < end:
        time.sleep(0.01)
    procs[1].send_signal(signal.SIGTERM)  # one process only, as a scheduler may do
    results = finish(procs)
    for pid, (code, line) in enumerate(results):
        print(f'process {pid}: exit {code}: {line}')
    stopped_steps = {line.split('step ')[1].split()[0] for _, line in results if 'step ' in line}
    ok &= all(code == checkpoint.EXIT_CODE for code, _ in results) and len(stopped_steps) == 1
    print('checkpoints after the stop:',
          sorted(os.listdir(os.path.join(stopped, 'checkpoints')), key=int))

    ok &= all(code == 0 for code, _ in finish(launch(data_dir, stopped)))
    a, b = (test_trainer.restore_params(w, NUM_STEPS) for w in (straight, stopped))
    same = all(np.array_equal(x, y)
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    print(f'both stopped at one step: {len(stopped_steps) == 1}; the resumed run equals the '
          f'uninterrupted one bit for bit: {same}')
    return 0 if ok and same else 1


if __name__ == '__main__':
    sys.exit(main())
