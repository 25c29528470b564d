"""What a checkpoint costs: save (Orbax, with the per-array sha256 that restore verifies) and
restore, for the default configs' training states.

    python benchmarks/bench_checkpoint.py [--configs vae_mnist,ddpm_mnist,dcgan_mnist] [--repeats 5]

For each config: the state's size, then the median over --repeats of
  digest_s   sha256 of every array (what save adds to Orbax's own work),
  save_s     checkpoint.save + wait_until_finished (the trainer waits this long only at a
             preemption; periodic saves overlap training, Orbax writes in the background),
  restore_s  checkpoint.restore, digests verified.
Repeats alternate between configs, so load from other processes hits each alike.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from genmodels import xla_cpu  # noqa: E402

xla_cpu.configure()

import importlib  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from genmodels import data, families  # noqa: E402
from genmodels.training import checkpoint, parallel, train_state  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--configs', default='vae_mnist,ddpm_mnist,dcgan_mnist')
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    mesh = parallel.make_mesh()
    states = {}
    for name in args.configs.split(','):
        config = importlib.import_module(f'configs.{name}').get_config()
        family = families.validated(config)
        example = train_state.example_batch(data.dataset_info(config.data))
        states[name] = train_state.init_state(config, family, mesh, example)
    times = {name: {'digest_s': [], 'save_s': [], 'restore_s': []} for name in states}
    with tempfile.TemporaryDirectory() as root:
        for r in range(args.repeats):
            for name, state in states.items():
                workdir = os.path.join(root, f'{name}_{r}')
                mngr = checkpoint.manager(workdir)
                t0 = time.perf_counter()
                checkpoint.digests(state)
                t1 = time.perf_counter()
                checkpoint.save(mngr, 1, state)
                mngr.wait_until_finished()
                t2 = time.perf_counter()
                abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                                       sharding=x.sharding), state)
                checkpoint.restore(mngr, abstract, 1)
                t3 = time.perf_counter()
                for key, seconds in zip(times[name], (t1 - t0, t2 - t1, t3 - t2)):
                    times[name][key].append(seconds)
    print(f'{"config":<14} {"arrays":>7} {"MB":>8} {"digest_s":>9} {"save_s":>8} {"restore_s":>10}')
    for name, state in states.items():
        leaves = jax.tree.leaves(state)
        mb = sum(x.size * x.dtype.itemsize for x in leaves) / 1e6
        med = {k: float(np.median(v)) for k, v in times[name].items()}
        print(f'{name:<14} {len(leaves):>7} {mb:>8.1f} {med["digest_s"]:>9.3f} '
              f'{med["save_s"]:>8.3f} {med["restore_s"]:>10.3f}')


if __name__ == '__main__':
    main()
