"""Data parallelism over one `Mesh` axis 'data': batches sharded P('data'); the state replicated
P(), or with train.param_sharding = 'fsdp' each parameter and its optimizer state split along one
axis over the same devices (fully sharded data parallelism, ZeRO-3).

FSDP here is JAX's own mechanism: the state's arrays carry NamedShardings (`state_shardings`), and
XLA's SPMD partitioner inserts the all-gathers where a layer uses a parameter and the
reduce-scatters of its gradient; no hand-written collective. Two sharding constraints keep the
partitioner on that plan: the layers' inputs and outputs stay split by batch
(`batch_split_layers`) and the loss sees its parameters gathered (`gathered`, `fsdp_split`);
without them it may split a layer's output like its weight and gather the batch instead.

An array is split along its largest axis that the device count divides; arrays under
MIN_SHARDED_SIZE elements (biases, norms, the step) and those with no such axis stay replicated,
where the gather would cost more than the copy. Orbax saves each array with its sharding and
restores it onto whatever shardings the restoring run asks for, so a checkpoint moves between
device counts and between the two layouts.

This is the current JAX data-parallel path: `jax.jit` over a mesh with sharded inputs (jax.pmap is in
maintenance mode and is itself a wrapper over jit + shard_map). The same code runs on 1 CPU device,
N fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N), N GPUs or a TPU slice, and
across processes after `jax.distributed.initialize`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
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


MIN_SHARDED_SIZE = 2 ** 10  # elements: smaller arrays stay replicated under fsdp


def fsdp_spec(shape: tuple[int, ...], num_devices: int) -> P:
    """P('data') on the largest axis of `shape` that `num_devices` divides (the last such on a
    tie); P() for a small array, one device, or no divisible axis."""
    if num_devices == 1 or math.prod(shape) < MIN_SHARDED_SIZE:
        return P()
    axes = [i for i, n in enumerate(shape) if n % num_devices == 0]
    if not axes:
        return P()
    axis = max(axes, key=lambda i: (shape[i], i))
    return P(*[('data' if i == axis else None) for i in range(len(shape))])


def state_shardings(mesh: Mesh, shapes: Any, param_sharding: str) -> Any:
    """A NamedSharding for each leaf of `shapes` (arrays or ShapeDtypeStructs): all replicated,
    or by `fsdp_spec`."""
    if param_sharding == 'replicated':
        return jax.tree.map(lambda _: replicated(mesh), shapes)
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape, mesh.size)), shapes)


def gathered(tree: Any) -> Any:
    """`tree` whole on every device (a sharding constraint to P() on the mesh of every device),
    inside a jitted step: fsdp's gather of the parameters where a layer uses them. Without it the
    partitioner may instead keep a layer's output split like its weight (a Dense kernel split along
    its outputs) and gather the batch, computing that layer on the whole global batch on every
    device (measured: DCGAN's generator, 8x the replicated step's activation memory)."""
    sharding = replicated(make_mesh())
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def batch_split_layers(mesh: Mesh, layers: tuple[type, ...]):
    """A flax method interceptor (a context manager) constraining the input and output of every
    call of `layers` to be split over 'data' along its leading (batch) axis, where that axis has
    rows for every device: under fsdp it anchors the activations to the batch layout, so that the
    partitioner gathers a layer's weight rather than the batch."""
    import flax.linen as nn

    def split(x):
        if not isinstance(x, jax.Array) or x.ndim < 2 or x.shape[0] % mesh.size:
            return x
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P('data')))

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != '__call__' or not isinstance(context.module, layers):
            return next_fun(*args, **kwargs)
        return jax.tree.map(split, next_fun(*jax.tree.map(split, args), **kwargs))

    return nn.intercept_methods(interceptor)


def fsdp_split(tree: Any) -> Any:
    """Each array of `tree` constrained to its `fsdp_spec` layout, inside a jitted step: the
    gradients of `gathered` parameters, reduce-scattered to the layout of the optimizer state."""
    mesh = make_mesh()
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(
        x, NamedSharding(mesh, fsdp_spec(x.shape, mesh.size))), tree)


def to_host(tree: Any) -> Any:
    """`jax.device_get`, gathering first the arrays that span other processes' devices (an fsdp
    state in a multi-process run): every process gets the whole numpy array."""
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return multihost_utils.process_allgather(x, tiled=True)
        return jax.device_get(x)
    return jax.tree.map(get, tree)
