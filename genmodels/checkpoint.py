"""Orbax checkpoints of the training state: periodic and final saves, keep N, restore the latest.

A state is saved only if every array in it is finite, so the latest checkpoint is always usable.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

PyTree = Any


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or would hold non-finite values."""


def manager(workdir: str, keep: int, read_only: bool = False) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                           read_only=read_only)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, 'checkpoints')),
                                 options=options)


def all_finite(tree: PyTree) -> bool:
    leaves = [x for x in jax.tree.leaves(tree)
              if hasattr(x, 'dtype') and jnp.issubdtype(x.dtype, jnp.inexact)]
    if not leaves:
        return True
    return bool(jax.device_get(jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))))


def save(mngr: ocp.CheckpointManager, step: int, state: PyTree) -> None:
    if not all_finite(state):
        raise CheckpointError(f'refusing to save a non-finite state at step {step}.')
    mngr.save(step, args=ocp.args.StandardSave(state), force=True)


def restore(mngr: ocp.CheckpointManager, abstract_state: PyTree, step: int | None = None
            ) -> tuple[PyTree, int] | tuple[None, None]:
    """Restores `step` (default: the latest) onto the shardings of `abstract_state`."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None, None
    try:
        state = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as e:  # Orbax raises many types for unreadable or mismatched files.
        path = os.path.join(str(mngr.directory), str(step))
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(
            f'checkpoint at step {step} ({path}) cannot be restored: {first_line}. If it is '
            f'corrupt, move that directory aside to resume from the previous checkpoint.') from e
    return state, step


def abstract(tree: PyTree, sharding: jax.sharding.Sharding) -> PyTree:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
