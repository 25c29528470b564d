"""Every deep family under train.param_sharding = 'fsdp' at 8 devices: the same losses and state as
the replicated layout, and no more activation memory.

    .venv/bin/python -m tools.check_fsdp_families [--configs ae_mnist,vae_mnist,...] [--steps 3]

For each config's :smoke variant, in a process of 8 fake CPU devices, both layouts start from the
same initial state and take --steps train steps of a global batch of 16 on the same batches. Prints,
per config, the largest relative difference of the logged metrics and of the final state between
the layouts, and the compiled step's temporary memory under fsdp over replicated (a ratio well
above 1 means the partitioner computed some layer on the whole global batch on every device, the
fault `parallel.batch_split_layers` fixed). Exits 1 if a metric differs by more than 1e-4
relative, a state array by more than 5e-5 + 1e-3 of its value (the multi-device test's bound: Adam
turns float reassociation into steps of up to ~1e-5 on weights whose gradient is ~0), or the
memory ratio exceeds 1.25. Not in the test suite, which trains a fsdp
DDPM and a fsdp DCGAN in the multi-device test's launches (tests/test_trainer.py); this covers
every family at about 3 minutes on 2 cores.
"""

import argparse
import importlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = 8
CONFIGS = ('ae_mnist', 'vae_mnist', 'vae_conv_mnist', 'dcgan_mnist', 'cdcgan_mnist',
           'infogan_mnist', 'gan_grid25', 'ddpm_mnist', 'edm_mnist', 'score_mnist', 'fm_mnist',
           'flow_mnist', 'ar_mnist', 'classifier_mnist')
TOLERANCE = 1e-4
STATE_RTOL, STATE_ATOL = 1e-3, 5e-5
MEMORY_RATIO = 1.25


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--configs', default=','.join(CONFIGS))
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--batch_size', type=int, default=16)
    return p.parse_args(argv)


def relative(a, b) -> float:
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-6)) if a.size else 0.0


def excess(a, b) -> float:
    """max |a - b| - (STATE_ATOL + STATE_RTOL |a|): positive where a and b are not close."""
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) - STATE_ATOL - STATE_RTOL * np.abs(a))) if a.size else -1.0


def run_layout(name: str, layout: str, args):
    """(metrics per step, final state on the host, compiled step's temp bytes) of one layout."""
    import jax

    from genmodels import data, families
    from genmodels.training import parallel, train_state
    config = importlib.import_module(f'configs.{name}').get_config('smoke')
    config.train.batch_size, config.train.param_sharding = args.batch_size, layout
    family = families.validated(config)
    mesh = parallel.make_mesh()
    info = data.dataset_info(config.data)
    state = train_state.init_state(config, family, mesh, train_state.example_batch(info))
    batches = data.train_iterator(config.data, args.batch_size, config.data.seed)
    step = train_state.make_train_step(config, family, mesh, state)
    compiled, metrics = None, []
    for _ in range(args.steps):
        batch = parallel.shard_batch(mesh, next(batches))
        compiled = compiled or step.lower(state, batch).compile()
        state, m = compiled(state, batch)
        metrics.append(jax.device_get(m))
    return metrics, parallel.to_host(state), compiled.memory_analysis().temp_size_in_bytes


def check(args) -> int:
    import jax
    import numpy as np
    assert jax.device_count() == DEVICES, jax.device_count()
    failed = []
    for name in args.configs.split(','):
        (m_rep, s_rep, t_rep), (m_fsdp, s_fsdp, t_fsdp) = (
            run_layout(name, layout, args) for layout in ('replicated', 'fsdp'))
        metric = max(relative(a[k], b[k]) for a, b in zip(m_rep, m_fsdp) for k in a)
        pairs = list(zip(jax.tree.leaves(s_rep), jax.tree.leaves(s_fsdp), strict=True))
        state = max(float(np.max(np.abs(np.asarray(a) - b))) if a.size else 0.0
                    for a, b in pairs)
        ratio = t_fsdp / max(t_rep, 1)
        bad = (metric > TOLERANCE or max(excess(a, b) for a, b in pairs) > 0
               or ratio > MEMORY_RATIO)
        print(f'{name}: metrics {metric:.1e} relative, state {state:.1e} absolute, '
              f'temp fsdp/replicated '
              f'{ratio:.2f} ({t_fsdp / 2**20:.2f} / {t_rep / 2**20:.2f} MiB)'
              f'{"  FAILED" if bad else ""}', flush=True)
        failed += [name] * bad
    print('failed: ' + ', '.join(failed) if failed else 'all agree')
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.environ.get('GENMODELS_FSDP_CHILD') != '1':  # relaunch with 8 fake CPU devices
        env = dict(os.environ, JAX_PLATFORMS='cpu', GENMODELS_FSDP_CHILD='1',
                   XLA_FLAGS=f'{os.environ.get("XLA_FLAGS", "")} '
                   f'--xla_force_host_platform_device_count={DEVICES}')
        return subprocess.run([sys.executable, '-m', 'tools.check_fsdp_families']
                              + sys.argv[1:], cwd=ROOT, env=env).returncode
    sys.path.insert(0, ROOT)
    from genmodels import xla_cpu
    xla_cpu.configure()
    return check(args)


if __name__ == '__main__':
    sys.exit(main())
