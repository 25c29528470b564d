"""Step time of the jitted, sharded VAE train step (the trainer's own step function).

    python benchmarks/bench_vae_step.py [--batch_size 128] [--steps 100] [--architecture mlp]

Prints the median wall time per step over `--steps` steps after compilation, on whatever devices
JAX sees. Data comes from the real pipeline but is fetched before timing starts.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genmodels import xla_cpu  # noqa: E402

xla_cpu.configure()  # train.py's XLA:CPU settings, before JAX starts

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import vae_mnist  # noqa: E402
from genmodels import data, families  # noqa: E402
from genmodels.training import parallel, train_state  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--batch_size', type=int, default=128)
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument('--architecture', default='mlp', choices=['mlp', 'conv'])
    args = parser.parse_args()

    config = vae_mnist.get_config()
    config.model.architecture = args.architecture
    config.train.batch_size = args.batch_size
    family = families.get(config.family)
    mesh = parallel.make_mesh()
    batches = data.train_iterator(config.data, args.batch_size, config.data.seed)
    host = [next(batches) for _ in range(args.steps + 1)]
    state = train_state.init_state(config, family, mesh, host[0])
    step_fn = train_state.make_train_step(config, family, mesh, state)
    sharded = [parallel.shard_batch(mesh, b) for b in host]
    state, metrics = step_fn(state, sharded[0])  # Compile.
    jax.block_until_ready(metrics)
    times = []
    for batch in sharded[1:]:
        t = time.perf_counter()
        state, metrics = step_fn(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    ms = 1e3 * np.asarray(times)
    print(f'vae/{args.architecture} batch {args.batch_size} on {jax.device_count()} '
          f'{jax.devices()[0].platform} device(s): median {np.median(ms):.2f} ms/step '
          f'(p10 {np.percentile(ms, 10):.2f}, p90 {np.percentile(ms, 90):.2f}, {args.steps} steps)')


if __name__ == '__main__':
    main()
