"""Data parallelism: one `Mesh` axis 'data'; batches sharded P('data'), state replicated P().

This is the current JAX data-parallel path: `jax.jit` over a mesh with sharded inputs (jax.pmap is in
maintenance mode and is itself a wrapper over jit + shard_map). The same code runs on 1 CPU device,
N fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N), N GPUs or a TPU slice, and
across processes after `jax.distributed.initialize`.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def maybe_initialize_distributed() -> None:
    """Joins a multi-process job, if this process is part of one.

    - JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set: those are used.
    - Under SLURM with more than one task (SLURM_NTASKS > 1), or with GENMODELS_DISTRIBUTED=1 (a
      Cloud TPU pod slice, Kubernetes, Open MPI): `jax.distributed.initialize()` detects the
      coordinator, process count and index from the cluster itself.
    A single process needs nothing.
    """
    explicit = 'JAX_COORDINATOR_ADDRESS' in os.environ
    detected = (int(os.environ.get('SLURM_NTASKS', '1')) > 1
                or os.environ.get('GENMODELS_DISTRIBUTED') == '1')
    if not (explicit or detected):
        return
    if os.environ.get('JAX_PLATFORMS', '') == 'cpu':
        jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    if not explicit:
        jax.distributed.initialize()
        return
    jax.distributed.initialize(
        coordinator_address=os.environ['JAX_COORDINATOR_ADDRESS'],
        num_processes=int(os.environ['JAX_NUM_PROCESSES']),
        process_id=int(os.environ['JAX_PROCESS_ID']))


def make_mesh() -> Mesh:
    # Auto axes: the compiler propagates shardings through the model, so family code never
    # annotates them (jax.make_mesh now defaults to Explicit axes, which would require it).
    return jax.make_mesh((jax.device_count(),), ('data',), axis_types=(AxisType.Auto,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P('data'))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def shard_batch(mesh: Mesh, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Host-local numpy batch (this process's rows) -> global array sharded over 'data'."""
    sharding = data_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}
