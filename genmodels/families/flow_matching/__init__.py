"""Flow matching (Lipman et al. 2023; Liu et al. 2023, rectified flow): a velocity field v(x, t)
regressed onto the velocity of a probability path from noise (t = 0) to data (t = 1), sampled and
scored by integrating the ODE dx/dt = v(x, t) (genmodels/nn/ode.py).

With x0 ~ N(0, I), x1 a data point and t drawn per example, the conditional path and its velocity:

    linear  (CondOT, rectified flow)  x_t = (1 - t) x0 + t x1,                u = x1 - x0
    cosine  (variance preserving)     x_t = cos(pi t / 2) x0 + sin(pi t / 2) x1,
                                      u = pi / 2 (cos(pi t / 2) x1 - sin(pi t / 2) x0)

and the loss || v(x_t, t) - u ||^2, summed over dimensions and averaged over examples: its
minimiser is the marginal velocity E[u | x_t], whose ODE carries N(0, I) to the data's
distribution (Lipman et al. 2023, Thm 2). The times are uniform on [0, 1] or logit-normal
(t = sigmoid(m + s n), n ~ N(0, 1); Esser et al. 2024), which weighs the middle of the path.

Sampling integrates from t = 0 to 1 with `sampler.name`: a fixed-step method (`euler50`,
`heun20`, `midpoint25`, `rk410`) or adaptive `dopri5` (`sampler.rtol`, `sampler.atol`); eval.json
records the sampler's NFE. A fixed-step solver's grid is `sampler.spacing` or its name's ending
(`heun10_karras`, `euler10_shift3`): equal steps in t (`uniform`, the default), EDM's noise
levels (`karras`), equal steps in log SNR (`logsnr`), or equal steps with the noise-to-signal
ratio scaled by S (`shift<S>`, Esser et al. 2024's time shift; paths.time_grid). The likelihood is
exact through the instantaneous change of variables (Chen et al. 2018), integrated from the data
back to the noise with `eval.likelihood_solver`: the exact divergence for toy points, Hutchinson's
estimate for images (`eval.hutchinson`), whose standard error over the test examples is reported
beside the mean. Dequantised pixels give bits/dim of the 8-bit data (genmodels/metrics/units.py).

Couplings (`objective`): `cfm` pairs each data point with independent noise; `ot_cfm` (Tong et
al. 2024) re-pairs the batch's noise and data by minibatch optimal transport under the squared
distance, with `loss.ot_method` `exact` (the optimal permutation, genmodels/nn/transport.py) or
`sinkhorn` (each data point's noise drawn from the entropic plan's column, `loss.sinkhorn_reg`);
the coupling is computed over the global batch, so it does not depend on the device count.
`model.source` is N(0, I) (`normal`) or a toy distribution (`toy_eight_gaussians`, ...), for
flows between two 2D distributions.

A conditional model (`model.conditional`) sees the label through the network's class embedding,
replaced by "no label" with probability `loss.label_dropout` in training; sampling follows the
guided velocity v_uncond + s (v_cond - v_uncond), s = `sampler.guidance_scale` (classifier-free
guidance as in the DDPM family, applied to the velocity). The likelihood is the unconditional one.

The network is the DDPM family's: the U-Net for images, the MLP denoiser for toy points, told t
through their timestep embedding as 1000 t.
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmodels import config as config_lib, data as data_lib, metrics, viz
from genmodels.config import ConfigError
from genmodels.metrics import labels as labels_lib, modes as modes_lib, sample_quality, units
from genmodels.families.flow_matching import reflow
from genmodels.families.flow_matching.paths import (TIME_SCALE, Batch, Field, _num_classes,
                                                    cfm_loss, couple, fixed_step_grid,
                                                    integrate, make_velocity, network,
                                                    parse_spacing, path, sample_times, solver,
                                                    source_log_prob, source_sample)
from genmodels.families.flow_matching.reflow import PAIRS_FILE, REFLOW_STREAM, reflow_objective
from genmodels.nn import noise, ode, transport, unet
from genmodels.training import train_state

# The one-module family's names, all still reachable as flow_matching.<name>.
__all__ = [
    'ADDED_KEYS', 'Batch', 'CONFIG_SCHEMA', 'Field', 'LABEL_SAMPLES', 'OBJECTIVES',
    'OT_METHODS', 'PAIRS_FILE', 'PATHS', 'REFLOW_STREAM', 'REMAT_BLOCKS', 'RESUMABLE_KEYS',
    'TIME_DISTRIBUTIONS', 'TIME_SCALE', 'TRAJECTORIES', 'TRAJECTORY_SOLVER', 'cfm_loss',
    'check_config', 'couple', 'evaluate', 'figures', 'init', 'integrate', 'log_likelihood',
    'make_velocity', 'network', 'path', 'reflow_objective', 'sample', 'sample_times',
    'sample_with_nfe', 'solver', 'source_log_prob', 'source_sample', 'train_step',
    'training_pairs', 'with_sampler',
]

PyTree = Any

PATHS = ('linear', 'cosine')
TIME_DISTRIBUTIONS = ('uniform', 'logit_normal')
OT_METHODS = ('exact', 'sinkhorn')

CONFIG_SCHEMA = {
    'model': {
        **unet.MODEL_SCHEMA,
        'conditional': bool,        # class embedding + label dropout (classifier-free guidance)
        'source': str,              # 'normal' (N(0, I)) or a toy dataset name (2D flows)
        'path': str,                # 'linear' or 'cosine'
        'time_distribution': str,   # 'uniform' or 'logit_normal'
        'logit_mean': float,        # logit-normal times: t = sigmoid(logit_mean + logit_std n)
        'logit_std': float,
    },
    'loss': {
        'ot_method': str,           # ot_cfm's coupling: 'exact' or 'sinkhorn'
        'sinkhorn_reg': float,      # its entropic regularisation, relative to the mean cost
        'label_dropout': float,     # P(label -> "no label") in training, conditional models
        'reflow_teacher': str,      # objective reflow: the workdir of the flow-matching teacher
        'reflow_pairs': int,        # the (noise, teacher's sample) pairs it makes, once
        'reflow_solver': str,       # the teacher's ODE solver for them
    },
    'sampler': {
        'name': str,                # euler50, heun20, midpoint25, rk410 (+ _karras ...) or dopri5
        'rtol': float,              # dopri5's tolerances
        'atol': float,
        'guidance_scale': float,    # classifier-free guidance s (conditional models)
        'spacing': str,             # fixed-step grids without a name ending: paths.SPACINGS
    },
    'eval': {
        'likelihood_solver': str,   # the ODE solver of the likelihood, named as sampler.name
        'hutchinson': bool,         # Hutchinson's divergence estimate (else exact: low dims)
        'samplers': tuple,          # e.g. ('euler1', 'euler10', 'dopri5'): sample metrics of each
        'w2_samples': int,          # toys: samples of the exact 2-Wasserstein distance (0: off)
    },
}
# train.remat='blocks' recomputes these in the backward pass (model.architecture='unet' only).
REMAT_BLOCKS = ('U-Net residual blocks', 'U-Net attention blocks')
RESUMABLE_KEYS = tuple(f'sampler.{k}' for k in CONFIG_SCHEMA['sampler']) + (
    'eval.likelihood_solver', 'eval.hutchinson', 'eval.samplers', 'eval.w2_samples')
# Keys added after the first flow-matching runs were saved, with the values that reproduce them.
ADDED_KEYS = {
    'model.conditional': False, 'model.source': 'normal', 'loss.ot_method': 'exact',
    'loss.sinkhorn_reg': 0.05, 'loss.label_dropout': 0.1, 'loss.reflow_teacher': '',
    'loss.reflow_pairs': 20_000, 'loss.reflow_solver': 'rk410', 'sampler.guidance_scale': 1.0,
    'sampler.spacing': 'uniform', 'eval.samplers': (), 'eval.w2_samples': 0}


def check_config(config: ml_collections.ConfigDict) -> None:
    m = config.model
    if m.architecture not in ('unet', 'mlp'):
        raise ConfigError(f"model.architecture must be 'unet' or 'mlp', got {m.architecture!r}.")
    if data_lib.is_toy(config.data.name) and m.architecture != 'mlp':
        raise ConfigError("toy data are points, not images: use model.architecture='mlp'.")
    config_lib.check_choice(config, 'model.path', PATHS)
    config_lib.check_choice(config, 'model.time_distribution', TIME_DISTRIBUTIONS)
    if m.logit_std <= 0:
        raise ConfigError(f'model.logit_std must be positive, got {m.logit_std}.')
    names = [('sampler.name', config.sampler.name),
             ('eval.likelihood_solver', config.eval.likelihood_solver)]
    for key, name in names + [('eval.samplers', n) for n in config.eval.samplers]:
        try:
            solver(name)
        except ValueError as e:
            raise ConfigError(f'{key}: {e}') from None
    try:
        parse_spacing(config.sampler.spacing)
    except ValueError as e:
        raise ConfigError(f'sampler.spacing: {e}') from None
    if not (config.sampler.rtol > 0 and config.sampler.atol > 0):
        raise ConfigError('sampler.rtol and sampler.atol must be positive.')
    config_lib.check_choice(config, 'loss.ot_method', OT_METHODS)
    if config.loss.sinkhorn_reg <= 0:
        raise ConfigError(f'loss.sinkhorn_reg must be positive, got {config.loss.sinkhorn_reg}.')
    if not 0.0 <= config.loss.label_dropout < 1.0:
        raise ConfigError(f'loss.label_dropout must be in [0, 1), got {config.loss.label_dropout}.')
    if config.sampler.guidance_scale < 0:
        raise ConfigError('sampler.guidance_scale must be >= 0.')
    if config.sampler.guidance_scale != 1.0 and not m.conditional:
        raise ConfigError('sampler.guidance_scale other than 1 needs a conditional model '
                          '(model.conditional=True).')
    if m.source != 'normal':
        if not data_lib.is_toy(m.source):
            raise ConfigError(f"model.source must be 'normal' or a toy dataset (toy_...), got "
                              f'{m.source!r}.')
        if not data_lib.is_toy(config.data.name) or (
                data_lib.toy_distribution(m.source).dim
                != data_lib.toy_distribution(config.data.name).dim):
            raise ConfigError(f'model.source={m.source!r} is a toy distribution: the data must be '
                              f'a toy of the same dimension, got {config.data.name!r}.')
    if config.objective == 'reflow':
        if not config.loss.reflow_teacher:
            raise ConfigError('objective reflow needs loss.reflow_teacher: the workdir of a '
                              'trained flow-matching run.')
        if config.loss.reflow_pairs < config.train.batch_size:
            raise ConfigError(f'loss.reflow_pairs ({config.loss.reflow_pairs}) must be at least '
                              f'train.batch_size ({config.train.batch_size}).')
        try:
            solver(config.loss.reflow_solver)
        except ValueError as e:
            raise ConfigError(f'loss.reflow_solver: {e}') from None
    if config.eval.w2_samples < 0:
        raise ConfigError(f'eval.w2_samples must be >= 0, got {config.eval.w2_samples}.')


# ------------------------------------------------------------------------------------------------
# Objectives: (config, params, batch, rng, dropout_rng) -> (loss [B], quarter of the path [B])

def _objective(coupled: bool) -> Callable:
    def objective(config, params, batch: Batch, rng: jax.Array, dropout_rng: jax.Array):
        labels = None
        if config.model.conditional:
            drop = noise.uniform(jax.random.fold_in(rng, 2), batch['index'], ())
            labels = jnp.where(drop < config.loss.label_dropout, _num_classes(config),
                               batch['label'])
        velocity = make_velocity(config, params, labels, train=True, dropout_rng=dropout_rng)
        return cfm_loss(config, velocity, batch, rng, coupled=coupled)

    return objective


OBJECTIVES: dict[str, Callable] = {
    'cfm': _objective(coupled=False),       # independent coupling (Lipman et al. 2023, Eq. 9)
    'ot_cfm': _objective(coupled=True),     # minibatch OT coupling (Tong et al. 2024)
    'reflow': reflow.reflow_objective,      # the teacher's ODE coupling (loss.reflow_teacher)
}



# ------------------------------------------------------------------------------------------------
# The family contract

training_pairs = reflow.training_pairs  # the optional hook that makes reflow's pairs

def init(config, rng: jax.Array, example_batch: Batch) -> dict[str, PyTree]:
    x = jnp.asarray(example_batch['image'][:1])
    labels = jnp.zeros((1,), jnp.int32) if config.model.conditional else None
    params = network(config).init(rng, x, jnp.zeros((1,), jnp.float32), labels)['params']
    return train_state.create(config, params)


def train_step(config, state, batch: Batch, rng: jax.Array):
    objective = config_lib.objective(OBJECTIVES, config.objective)
    return train_state.step_by_noise_level(config, state, batch, rng, objective, lambda q: q)


def sample_with_nfe(config, params, rng: jax.Array, num: int, labels=None, name: str | None = None
                    ) -> tuple[jax.Array, jax.Array]:
    """(x [num, H, W, C] from the ODE at t = 1, its NFE), images clipped to the value range; with
    solver `name` (default sampler.name). A conditional model draws class-balanced labels (i mod K)
    when `labels` is None."""
    shape = tuple(data_lib.dataset_info(config.data).shape)
    if config.model.conditional and labels is None:
        labels = labels_lib.balanced(num, _num_classes(config))
    x0 = source_sample(config, rng, jnp.arange(num), shape)
    x, nfe = integrate(config, make_velocity(config, params, labels), x0, 0.0, 1.0,
                       name or config.sampler.name)
    bounds = data_lib.value_range(config.data)
    return (jnp.clip(x, *bounds) if bounds is not None else x), nfe


def with_sampler(config, name: str) -> ml_collections.ConfigDict:
    """`config` sampling with the solver `name` ('euler10', 'dopri5')."""
    variant = copy.deepcopy(config)
    variant.sampler.name = name
    return variant


def sample(config, params, rng: jax.Array, num: int, labels=None) -> jax.Array:
    """x [num, H, W, C]: the sampler's ODE from the source (N(0, I) unless model.source)."""
    return sample_with_nfe(config, params, rng, num, labels)[0]


def log_likelihood(config, params, batch: Batch, rng: jax.Array) -> jax.Array:
    """log p(x) [B] in nats through the instantaneous change of variables, from the data (t = 1)
    back to the source at t = 0 (Hutchinson's estimate with eval.hutchinson, keyed by the
    example)."""
    x = batch['image']
    probe = None
    if config.eval.hutchinson:
        probe = 2.0 * (noise.uniform(rng, batch['index'], x.shape[1:]) < 0.5) - 1.0  # Rademacher
    base = functools.partial(source_log_prob, config)
    method, steps, times = fixed_step_grid(config, config.eval.likelihood_solver, 1.0, 0.0)
    if method == 'dopri5':
        raise ValueError('the likelihood needs a fixed-step eval.likelihood_solver (rk410, ...).')
    log_p, _, _ = ode.log_likelihood(make_velocity(config, params), x, 1.0, 0.0, base, steps,
                                     method, noise=probe, times=times)
    return log_p


def evaluate(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> dict[str, float]:
    """The test NLL through the ODE (with its standard error over the examples, which holds
    Hutchinson's noise too), the test loss, and the sampler's NFE; on toy data the true NLL, the
    KL estimate and the mode coverage of eval.num_samples samples."""
    k_ll, k_loss, k_sample, k_extra = jax.random.split(rng, 4)
    fn = jax.jit(lambda b: {'ll': log_likelihood(config, params, b, k_ll),
                            'loss': cfm_loss(config, make_velocity(config, params), b,
                                             k_loss)[0]})
    out = data_lib.map_batches(fn, data, config.eval.batch_size)
    nll = -out['ll']
    dims = int(np.prod(data['image'].shape[1:]))
    prep = data_lib.preprocessing(config.data)
    result = {**metrics.likelihood_record(float(np.mean(nll)), dims, prep),
              'nll_std_error_nats': float(np.std(nll) / math.sqrt(len(nll))),
              'nll_divergence': 'hutchinson' if config.eval.hutchinson else 'exact',
              'nll_solver': config.eval.likelihood_solver,
              'test_loss': float(np.mean(out['loss']))}
    toy = data_lib.is_toy(config.data.name)
    num = config.eval.num_samples if toy else config.eval.batch_size
    points, nfe = jax.jit(lambda key: sample_with_nfe(config, params, key, num))(k_sample)
    result['sampler_nfe'] = int(nfe)
    if toy:
        result |= units.toy_reference(config.data, data['image'], result)
        result |= modes_lib.of_toy_samples(np.asarray(points).reshape(num, -1),
                                           data_lib.toy_distribution(config.data.name))
        names = (config.sampler.name,) + tuple(n for n in config.eval.samplers
                                                if n != config.sampler.name)
        if config.eval.w2_samples:
            result |= _toy_w2(config, params, names, k_extra)
        return result
    if config.model.conditional and sample_quality.has_classifier(config.data.name):
        asked, read = sample_quality.read_labels(
            config, lambda key, asked: sample(config, params, key, config.eval.batch_size, asked),
            jax.random.fold_in(k_extra, 0), LABEL_SAMPLES, _num_classes(config))
        result['label_accuracy'] = labels_lib.label_accuracy(read, asked)
    return result | _sampler_metrics(config, params, jax.random.fold_in(k_extra, 1))


LABEL_SAMPLES = 1000  # generated images read by the shipped classifier for label_accuracy


def _sampler_metrics(config, params, rng: jax.Array) -> dict[str, float]:
    """For each eval.samplers entry: its sample metrics (suffixed with its name), seconds per
    image and NFE (sampler_nfe_<name>; dopri5's, which depends on the draw, is that of one batch
    of its own)."""
    def make_batch(name):
        return lambda key: sample_with_nfe(config, params, key, config.eval.batch_size,
                                           name=name)[0]

    out = sample_quality.per_sampler(config, config.eval.samplers, make_batch, rng)
    if 'sample_metrics_note' in out:
        return out
    for name in config.eval.samplers:
        method, steps = solver(name)
        if method == 'dopri5':
            nfe = jax.jit(lambda key: sample_with_nfe(config, params, key, config.eval.batch_size,
                                                      name=name)[1])(rng)
        else:
            nfe = ode.METHODS[method] * steps
        out[f'sampler_nfe_{name}'] = int(nfe)
    return out


def _toy_w2(config, params, names, rng: jax.Array) -> dict[str, float]:
    """w2_<name>: the exact 2-Wasserstein distance between eval.w2_samples samples of each solver
    and as many fresh points of the target (the optimal assignment of the two sets), and its NFE;
    w2_data_floor: the same distance between two independent draws of the target, what a perfect
    model scores at this sample size."""
    num = config.eval.w2_samples
    toy = data_lib.toy_distribution(config.data.name)
    target, twin = (np.asarray(toy.sample(jax.random.fold_in(rng, i), num)).reshape(num, -1)
                    for i in (0, 2))
    out = {'w2_data_floor': transport.wasserstein2(twin, target)}
    for name in names:
        fn = jax.jit(lambda key, name=name: sample_with_nfe(config, params, key, num, name=name))
        points, nfe = fn(jax.random.fold_in(rng, 1))
        out[f'w2_{name}'] = transport.wasserstein2(np.asarray(points).reshape(num, -1), target)
        out[f'sampler_nfe_{name}'] = int(nfe)
    return out


TRAJECTORIES = 256       # toy points whose ODE paths the trajectories figure draws
TRAJECTORY_SOLVER = 'rk450'  # their solver: fine enough to show the paths' curvature


def figures(config, params, data: dict[str, np.ndarray], rng: jax.Array, out_dir: str) -> list[str]:
    """Samples; for 2D toys also the ODE trajectories from the source to the samples; for images
    one row of samples per eval.samplers entry from the same source draw (samples against NFE)."""
    num = viz.num_samples(config.data)
    samples = jax.jit(lambda key: sample(config, params, key, num))(rng)
    paths = viz.save_samples(config.data, samples, f'{out_dir}/samples.png',
                             f'Flow matching samples ({config.sampler.name}, {config.model.path} '
                             f'path)', reference=data['image'])
    shape = tuple(data_lib.dataset_info(config.data).shape)
    if data_lib.is_toy(config.data.name):
        if shape[0] != 2:
            return paths
        method, steps = solver(TRAJECTORY_SOLVER)
        x0 = source_sample(config, jax.random.fold_in(rng, 1), jnp.arange(TRAJECTORIES), shape)
        _, _, states = ode.integrate(make_velocity(config, params), x0, 0.0, 1.0, steps, method,
                                     trajectory=True)
        lines = np.concatenate([np.asarray(x0)[None], np.asarray(states)]).reshape(
            steps + 1, TRAJECTORIES, 2)
        paths.append(viz.save_trajectories_2d(
            lines, f'{out_dir}/trajectories.png',
            f'ODE trajectories ({config.objective}, {TRAJECTORY_SOLVER})',
            target=np.asarray(data['image']).reshape(len(data['image']), -1)[:5000]))
        return paths
    if config.eval.samplers:
        lo, hi = data_lib.value_range(config.data)
        rows = [np.asarray(jax.jit(lambda key, n=n: sample_with_nfe(
            config, params, key, 10, name=n)[0])(jax.random.fold_in(rng, 2)))
            for n in config.eval.samplers]
        paths.append(viz.save_rows(rows, f'{out_dir}/samplers.png', list(config.eval.samplers),
                                   lo, hi))
    return paths
