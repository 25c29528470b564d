"""A checkpoint saved on one device count resumes on another and ends where an uninterrupted run
ends: saved on 8 devices, resumed on 4; saved on 1 and on 2, resumed on 8.

    .venv/bin/python -m tools.check_resume_devices [--param_sharding fsdp] [--config C]

Each run is train.py in its own process of N fake CPU devices
(--xla_force_host_platform_device_count),
8 steps of batch 64 with a checkpoint at step 4; a resumed run is a copy of the saving run's
workdir without its step-8 checkpoint (8 -> 4), or a 4-step run that train.py then continues to
step 8 (1 -> 8, 2 -> 8). Prints each run's losses for steps 5-8 and the largest difference of its
step-8 state (parameters, optimizer state, EMA) from the uninterrupted 8-device run's; exits 1 if
a loss differs by more than 1e-5 relative or a state array by more than 1e-5. Not in the test
suite, which checks 8 -> 1 and 8 -> 2 (tests/test_trainer.py) in launches it already makes; this
adds the directions the suite has no launch for, at about 4 minutes on 2 cores.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import jax
import numpy as np

from tests import test_trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-5


def train(args, devices: int, num_steps: int, workdir: str) -> None:
    env = dict(os.environ, JAX_PLATFORMS='cpu',
               XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
    flags = [f'--config.train.param_sharding={args.param_sharding}', '--config.train.batch_size=64',
             '--config.train.log_every=1', '--config.train.checkpoint_every=4',
             f'--config.train.num_steps={num_steps}', '--config.train.figures=False',
             '--config.train.fid_every=0', '--config.eval.num_samples=100',
             '--config.eval.max_examples=100']
    cmd = [sys.executable, 'train.py', '--config', args.config, '--workdir', workdir, *flags]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f'{" ".join(cmd)} (on {devices} devices) failed:\n{done.stderr[-3000:]}')


def losses(workdir: str) -> dict[int, float]:
    return {r['step']: r['loss'] for r in test_trainer.read_metrics(workdir) if 'loss' in r}


def largest_difference(a: list, b: list) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(a, b, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='configs/ddpm_mnist.py:smoke')
    parser.add_argument('--param_sharding', default='fsdp', choices=('fsdp', 'replicated'))
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix='resume_devices_')
    ref = os.path.join(root, 'saved_on_8')
    train(args, 8, 8, ref)
    runs = {}
    runs['8 -> 4'] = os.path.join(root, 'saved_on_8_resumed_on_4')
    shutil.copytree(ref, runs['8 -> 4'])
    shutil.rmtree(os.path.join(runs['8 -> 4'], 'checkpoints', '8'))
    os.remove(os.path.join(runs['8 -> 4'], 'eval.json'))
    train(args, 4, 8, runs['8 -> 4'])
    for saved in (1, 2):
        runs[f'{saved} -> 8'] = path = os.path.join(root, f'saved_on_{saved}_resumed_on_8')
        train(args, saved, 4, path)
        os.remove(os.path.join(path, 'eval.json'))
        train(args, 8, 8, path)

    ref_losses = losses(ref)
    ref_state = jax.tree.leaves(test_trainer.restore_params(ref, 8))
    at_4 = jax.tree.leaves(test_trainer.restore_params(ref, 4))
    floats = [(x, y) for x, y in zip(ref_state, at_4) if x.dtype.kind == 'f']
    moved = largest_difference(*zip(*floats))
    print(f'{args.config}, param_sharding={args.param_sharding}; uninterrupted on 8 devices: '
          f'losses 5-8 {[round(ref_losses[s], 7) for s in range(5, 9)]}, largest change of a '
          f'state array from step 4 to 8: {moved:.3g}')
    failed = False
    for name, path in runs.items():
        got = losses(path)
        loss_err = max(abs(got[s] - ref_losses[s]) / abs(ref_losses[s]) for s in range(5, 9))
        state_err = largest_difference(ref_state,
                                       jax.tree.leaves(test_trainer.restore_params(path, 8)))
        ok = loss_err <= TOLERANCE and state_err <= TOLERANCE
        failed |= not ok
        print(f'  {name}: losses 5-8 {[round(got[s], 7) for s in range(5, 9)]}; largest relative '
              f'loss difference {loss_err:.2g}, largest state difference {state_err:.2g}: '
              f'{"same" if ok else "DIFFERENT"}')
    shutil.rmtree(root)
    return int(failed)


if __name__ == '__main__':
    sys.exit(main())
