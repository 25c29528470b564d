"""Orbax checkpoints of the training state: periodic and final saves, keep N, restore the latest.

A state is saved only if every array in it is finite, so the latest checkpoint is always usable.
A deep family's state is restored onto the tree its `init` would build; a fitted state, whose shapes
depend on the data (a KDE keeps its training points, EM's trace has one entry per iteration), onto
the tree recorded in the checkpoint's own metadata (`restore_as_saved`).
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


def manager(workdir: str, keep: int | None = None, read_only: bool = False
            ) -> ocp.CheckpointManager:
    """`keep`: how many checkpoints a writing manager keeps (None: all; a reader deletes none)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                           read_only=read_only)
    # The handler is named so that `item_metadata` can read a checkpoint's tree before restoring.
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, 'checkpoints')),
                                 options=options, item_handlers=ocp.StandardCheckpointHandler())


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
        raise _unreadable(mngr, step, e) from e
    return state, step


def restore_as_saved(mngr: ocp.CheckpointManager, sharding: jax.sharding.Sharding,
                     step: int | None = None) -> tuple[PyTree, int] | tuple[None, None]:
    """Restores `step` (default: the latest) with the tree, shapes and dtypes it was saved with,
    onto `sharding`."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None, None
    try:
        saved = mngr.item_metadata(step).tree
    except Exception as e:  # Orbax raises many types for unreadable files.
        raise _unreadable(mngr, step, e) from e
    return restore(mngr, abstract(saved, sharding), step)


def _unreadable(mngr: ocp.CheckpointManager, step: int, e: Exception) -> CheckpointError:
    path = os.path.join(str(mngr.directory), str(step))
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    return CheckpointError(
        f'checkpoint at step {step} ({path}) cannot be restored: {first_line}. If it is '
        f'corrupt, move that directory aside to resume from the previous checkpoint.')


def abstract(tree: PyTree, sharding: jax.sharding.Sharding) -> PyTree:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
