"""Rectified flow's reflow (Liu et al. 2023, Sec. 2.2): a student trained on the path between the
pairs a teacher's ODE couples, its noise and its sample from that noise; the pairs are made once
into the student's workdir (`training_pairs`, the family's optional hook).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from genmodels import data as data_lib
from genmodels.config import ConfigError
from genmodels.families.flow_matching.paths import (Batch, integrate, make_velocity, path,
                                                    sample_times, source_sample)


def reflow_objective(config, params, batch: Batch, rng: jax.Array, dropout_rng: jax.Array):
    """Rectified flow's reflow (Liu et al. 2023, Sec. 2.2): the path between the teacher's coupled
    pairs, batch['source'] (its noise) and batch['image'] (its ODE's sample from that noise)."""
    x0, x1 = batch['source'], batch['image']
    t = sample_times(config, rng, batch['index'])
    xt, u = path(config, x0, x1, t)
    velocity = make_velocity(config, params, train=True, dropout_rng=dropout_rng)
    loss = jnp.sum((velocity(xt, t) - u) ** 2, axis=tuple(range(1, x1.ndim)))
    return loss, 3 - jnp.minimum((4 * t).astype(jnp.int32), 3)


PAIRS_FILE = 'reflow_pairs.npz'
REFLOW_STREAM = 0x7265666C  # the key stream of the pairs' noise


def training_pairs(config, workdir: str, restore) -> dict[str, np.ndarray] | None:
    """Objective reflow: {'source': noise [N, ...], 'image': the teacher's ODE sample from it},
    N = loss.reflow_pairs, made once with loss.reflow_solver and kept in workdir/reflow_pairs.npz
    (a resumed run reads them back). Other objectives: None."""
    if config.objective != 'reflow':
        return None
    path_ = os.path.join(workdir, PAIRS_FILE)
    if os.path.exists(path_):
        with np.load(path_) as saved:
            return {'source': saved['source'], 'image': saved['image']}
    teacher, state, step = restore(config.loss.reflow_teacher)
    if teacher.family != 'flow_matching' or teacher.model.conditional:
        raise ConfigError(f'loss.reflow_teacher={config.loss.reflow_teacher} must be an '
                          f'unconditional flow-matching run, got family {teacher.family!r}.')
    shape = tuple(data_lib.dataset_info(config.data).shape)
    if tuple(data_lib.dataset_info(teacher.data).shape) != shape:
        raise ConfigError(f'loss.reflow_teacher={config.loss.reflow_teacher} models '
                          f'{teacher.data.name}, not data of shape {shape}.')
    if np.ndim(state['step']) != 0:
        raise ConfigError('loss.reflow_teacher was trained with several seeds; give a '
                          'single-seed run.')
    params = state['ema_params'] if teacher.eval.use_ema else state['params']
    key = jax.random.fold_in(jax.random.key(config.seed), REFLOW_STREAM)
    b = config.eval.batch_size

    @jax.jit
    def pair(start):
        x0 = source_sample(teacher, key, start + jnp.arange(b), shape)
        x1, _ = integrate(teacher, make_velocity(teacher, params), x0, 0.0, 1.0,
                          config.loss.reflow_solver)
        return x0, x1

    chunks = [jax.device_get(pair(start)) for start in range(0, config.loss.reflow_pairs, b)]
    n = config.loss.reflow_pairs
    pairs = {'source': np.concatenate([c[0] for c in chunks])[:n],
             'image': np.concatenate([c[1] for c in chunks])[:n]}
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        tmp = path_ + '.tmp.npz'
        np.savez(tmp, teacher=os.path.abspath(config.loss.reflow_teacher), teacher_step=step,
                 **pairs)
        os.replace(tmp, path_)
    return pairs
