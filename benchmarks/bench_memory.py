"""What train.param_sharding = 'fsdp' and train.remat = 'blocks' save, per device, and what they
cost in step time, at N devices (8 fake CPU devices unless the machine has accelerators).

    python benchmarks/bench_memory.py [--configs ddpm_mnist,ar_mnist,dcgan_mnist] [--devices 8]
        [--steps 3] [--batch_size 64] [--memory_limit_mib 256]

For each config, with its default model and the given global batch:
  state_mib   parameters plus optimizer state (and EMA) held by device 0: the sum of its shards'
              bytes, replicated and fsdp, and their ratio;
  temp_mib    the compiled step's temporary memory (XLA's memory_analysis of the step program),
              without and with remat (where the family has blocks to recompute), and their ratio;
  step_s      the median time of --steps steps after the compile, replicated, fsdp and (where
              the family has blocks) replicated with remat, measured alternately in one process
              (only the ratios count: timings swing with load).
With --memory_limit_mib M, instead: the largest global batch (a power of two, at least one example
per device) whose step needs at most M MiB on device 0 (its state plus the step's temporary
memory), for each layout and remat setting the family has.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from genmodels import xla_cpu  # noqa: E402

xla_cpu.configure()

import importlib  # noqa: E402

MIB = 2 ** 20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--configs', default='ddpm_mnist,ar_mnist,dcgan_mnist')
    p.add_argument('--devices', type=int, default=8, help='fake CPU devices (CPU only)')
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--memory_limit_mib', type=float, default=None)
    return p.parse_args(argv)


def build(name: str, batch_size: int, layout: str, remat: str):
    import jax

    from genmodels import data, families
    from genmodels.training import parallel, train_state
    config = importlib.import_module(f'configs.{name}').get_config()
    config.train.batch_size = batch_size
    config.train.param_sharding, config.train.remat = layout, remat
    family = families.validated(config)
    mesh = parallel.make_mesh()
    info = data.dataset_info(config.data)
    state = train_state.init_state(config, family, mesh, train_state.example_batch(info))
    batches = data.train_iterator(config.data, batch_size, config.data.seed)
    batch = parallel.shard_batch(mesh, next(batches))
    step = train_state.make_train_step(config, family, mesh, state)
    compiled = step.lower(state, batch).compile()
    device = jax.devices()[0]
    held = sum(s.data.nbytes for x in jax.tree.leaves(state) for s in x.addressable_shards
               if s.device == device)
    return family, compiled, state, batch, held


def timed(compiled, state, batch, steps: int) -> tuple[float, object]:
    import jax
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], state


def largest_batch(name: str, limit_mib: float, layout: str, remat: str, devices: int) -> int:
    best, batch = 0, devices
    while batch <= 4096:
        _, compiled, _, _, held = build(name, batch, layout, remat)
        if (held + compiled.memory_analysis().temp_size_in_bytes) / MIB > limit_mib:
            break
        best, batch = batch, 2 * batch
    return best


def main(argv=None) -> None:
    args = parse_args(argv)
    if 'cpu' in os.environ.get('JAX_PLATFORMS', 'cpu'):
        xla_cpu.add_default('--xla_force_host_platform_device_count', str(args.devices))
    import jax
    print(f'devices: {jax.device_count()} x {jax.devices()[0].device_kind}, global batch '
          f'{args.batch_size}')
    if args.memory_limit_mib is not None:
        for name in args.configs.split(','):
            family = importlib.import_module('genmodels.families').get(
                importlib.import_module(f'configs.{name}').get_config().family)
            settings = [('replicated', 'none'), ('fsdp', 'none')]
            if getattr(family, 'REMAT_BLOCKS', ()):
                settings += [('replicated', 'blocks'), ('fsdp', 'blocks')]
            found = {f'{layout}+remat_{remat}': largest_batch(name, args.memory_limit_mib, layout,
                                                              remat, jax.device_count())
                     for layout, remat in settings}
            print(name, f'largest batch under {args.memory_limit_mib:g} MiB per device:',
                  ' '.join(f'{k}={v}' for k, v in found.items()), flush=True)
        return
    for name in args.configs.split(','):
        row = {}
        runs = {}
        for layout in ('replicated', 'fsdp'):
            family, compiled, state, batch, held = build(name, args.batch_size, layout, 'none')
            runs[layout] = [compiled, state, batch]
            row[f'state_mib_{layout}'] = held / MIB
            row[f'temp_mib_{layout}'] = compiled.memory_analysis().temp_size_in_bytes / MIB
        if getattr(family, 'REMAT_BLOCKS', ()):
            _, compiled, state, batch, _ = build(name, args.batch_size, 'replicated', 'blocks')
            runs['remat'] = [compiled, state, batch]
            row['temp_mib_remat'] = compiled.memory_analysis().temp_size_in_bytes / MIB
        times = {layout: [] for layout in runs}
        for _ in range(2):  # alternate, so load from other processes hits both alike
            for layout, run in runs.items():
                seconds, run[1] = timed(run[0], run[1], run[2], args.steps)
                times[layout].append(seconds)
        row |= {f'step_s_{k}': min(v) for k, v in times.items()}
        ratios = (f"state fsdp/replicated {row['state_mib_fsdp'] / row['state_mib_replicated']:.3f}"
                  f", step time fsdp/replicated {row['step_s_fsdp'] / row['step_s_replicated']:.2f}")
        if 'temp_mib_remat' in row:
            ratios += (f", temp remat/none "
                       f"{row['temp_mib_remat'] / row['temp_mib_replicated']:.3f}, step time "
                       f"remat/none {row['step_s_remat'] / row['step_s_replicated']:.2f}")
        print(name, ' '.join(f'{k}={v:.4g}' for k, v in row.items()), '|', ratios, flush=True)


if __name__ == '__main__':
    main()
