"""Denoising diffusion probabilistic models (Ho et al. 2020), with the improvements researchers use:
a cosine schedule and respaced sampling (Nichol & Dhariwal 2021), DDIM (Song et al. 2021), x_0 and v
targets (Salimans & Ho 2022), and classifier-free guidance (Ho & Salimans 2022). The maths is in
genmodels/nn/diffusion.py; this module is the family contract around it.

Training (objective 'simple', Ho Eq. 14): t ~ U{0..T-1}, eps ~ N(0, I), x_t = q_sample(x_0, t, eps),
loss = mean over pixels of (target - net(x_t, t))^2 with target eps, x_0 or v (model.prediction).
Objective 'vlb' instead minimises T times the bound's term at t (plus the prior term), the full
variational bound in nats per dimension, with the fixed variance of sampler.variance.
loss.min_snr_gamma > 0 weights L_simple by min-SNR-gamma (Hang et al. 2023). model.zero_terminal_snr
rescales the schedule so that ab_T = 0 (Lin et al. 2024: training then sees pure noise at T, as
sampling starts from it); it needs v (or x_0) prediction and the ancestral or DDIM samplers.

Conditional models (model.conditional) see the label through a class embedding; during training the
label is replaced by "no label" with probability loss.label_dropout, so one network gives both the
conditional and the unconditional prediction. Sampling combines them in eps space:

    eps = eps_uncond + s (eps_cond - eps_uncond),   s = sampler.guidance_scale

s = 0 is the unconditional model, s = 1 the conditional one, s > 1 guided (Ho & Salimans Eq. 6 with
w = s - 1). The sampler settings (sampler.*) may change on an existing workdir:
`python eval.py --workdir W --set sampler.guidance_scale=3`.

Images must not be dequantised: the bound's decoder at t = 0 is discretised to the data's levels
(Ho Eq. 13), so `nll_bits_per_dim` is the NLL of the discrete data, like the VAE's and the classical
rows'. On continuous toy data the decoder is a Gaussian density, and eval.json's `kl_estimate_nats` is
the bound minus the true NLL: an upper bound on KL(p || q) up to Monte Carlo error.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmodels import config as config_lib, data as data_lib, viz
from genmodels.config import ConfigError
from genmodels.metrics import (labels as labels_lib, modes as modes_lib, ode_likelihood,
                               sample_quality, units)
from genmodels.nn import diffusion, noise, ode, samplers, unet
from genmodels.training import train_state

PyTree = Any
Batch = dict[str, jax.Array]

CONFIG_SCHEMA = {
    'model': {
        **unet.MODEL_SCHEMA,            # the U-Net's and the MLP denoiser's keys
        'conditional': bool,            # class embedding + label dropout (classifier-free guidance)
        'schedule': str,                # 'linear' or 'cosine'
        'num_timesteps': int,           # T
        'beta_start': float,            # linear schedule only
        'beta_end': float,
        'prediction': str,              # 'eps', 'x0' or 'v'
        'zero_terminal_snr': bool,      # rescale the schedule to SNR 0 at T (Lin et al. 2024);
                                        # needs v or x0 prediction
    },
    'loss': {
        'label_dropout': float,         # P(label -> "no label") in training, conditional models
        'min_snr_gamma': float,         # min-SNR-gamma loss weight (Hang et al. 2023); 0: off
    },
    'sampler': {
        'name': str,                    # a samplers.SAMPLERS name: what `sample` (FID, figures) uses
        'num_steps': int,               # S kept timesteps (T: the full chain)
        'eta': float,                   # DDIM's and DPM-Solver++'s noise (0: the ODE; 1: the SDE)
        'variance': str,                # 'fixed_small' or 'fixed_large' (ancestral and the bound)
        'guidance_scale': float,        # classifier-free guidance s (conditional models)
        'clip_denoised': bool,          # clip x0_hat to the data range at every step (images)
        'spacing': str,                 # the kept timesteps: 'uniform' (in t), 'logsnr', 'karras'
                                        # (EDM's levels), '' (the sampler's own: DPM-Solver++
                                        # logsnr, Heun karras, the others uniform)
    },
    'eval': {                           # added to the shared eval section
        'samplers': tuple,              # e.g. ('ancestral1000', 'ddim50', 'ddim50_eta1'): FID of
                                        # each, with timing; DDIM's and DPM-Solver++'s eta is
                                        # sampler.eta unless the entry ends in _eta<E>
                                        # (dpmpp2m10_eta1: SDE-DPM-Solver++(2M)), and the
                                        # spacing sampler.spacing unless it ends in _<spacing>
                                        # (dpmpp2m10_eta1_karras)
        'nll_timesteps': int,           # bound terms evaluated: 0 = all T (exact sum); K < T: an
                                        # unbiased stratified estimate from K of them
        'ode_likelihood_solver': str,   # the probability-flow likelihood's fixed-step solver,
                                        # e.g. rk425 ('' = off): ode_nll_* in eval.json
    },
}
# train.remat='blocks' recomputes these in the backward pass (model.architecture='unet' only).
REMAT_BLOCKS = ('U-Net residual blocks', 'U-Net attention blocks')
RESUMABLE_KEYS = tuple(f'sampler.{k}' for k in CONFIG_SCHEMA['sampler']) + (
    'eval.samplers', 'eval.nll_timesteps', 'eval.ode_likelihood_solver')
# Keys added after runs were saved without them, with the values that reproduce those runs.
ADDED_KEYS = {'eval.ode_likelihood_solver': '', 'loss.min_snr_gamma': 0.0,
              'model.zero_terminal_snr': False, 'sampler.spacing': ''}
parse_sampler = samplers.parse_sampler  # an eval.samplers name -> (kind, steps, eta, spacing)


def check_config(config: ml_collections.ConfigDict) -> None:
    m, s = config.model, config.sampler
    toy = data_lib.is_toy(config.data.name)
    if m.architecture not in ('unet', 'mlp'):
        raise ConfigError(f"model.architecture must be 'unet' or 'mlp', got {m.architecture!r}.")
    if toy and m.architecture != 'mlp':
        raise ConfigError("toy data are points, not images: use model.architecture='mlp'.")
    config_lib.check_choice(config, 'model.schedule', diffusion.SCHEDULES)
    config_lib.check_choice(config, 'model.prediction', diffusion.PREDICTIONS)
    if m.num_timesteps < 2:
        raise ConfigError(f'model.num_timesteps must be at least 2, got {m.num_timesteps}.')
    if m.schedule == 'linear' and not 0 < m.beta_start <= m.beta_end < 1:
        raise ConfigError('the linear schedule needs 0 < model.beta_start <= model.beta_end < 1.')
    if not 0.0 <= config.loss.label_dropout < 1.0:
        raise ConfigError(f'loss.label_dropout must be in [0, 1), got {config.loss.label_dropout}.')
    if config.loss.min_snr_gamma < 0:
        raise ConfigError(f'loss.min_snr_gamma must be >= 0 (0: off), got '
                          f'{config.loss.min_snr_gamma}.')
    config_lib.check_choice(config, 'sampler.name', samplers.SAMPLERS)
    config_lib.check_choice(config, 'sampler.variance', diffusion.VARIANCES)
    config_lib.check_choice(config, 'sampler.spacing', ('',) + diffusion.SPACINGS)
    if not 1 <= s.num_steps <= m.num_timesteps:
        raise ConfigError(f'sampler.num_steps must be in [1, model.num_timesteps = '
                          f'{m.num_timesteps}], got {s.num_steps}.')
    if s.eta < 0 or s.guidance_scale < 0:
        raise ConfigError('sampler.eta and sampler.guidance_scale must be >= 0.')
    if s.guidance_scale != 1.0 and not m.conditional:
        raise ConfigError('sampler.guidance_scale other than 1 needs a conditional model '
                          '(model.conditional=True).')
    if s.clip_denoised and toy:
        raise ConfigError('toy data are unbounded: set sampler.clip_denoised=False.')
    for name in config.eval.samplers:
        try:
            steps = parse_sampler(name).num_steps
        except ValueError:
            steps = 0
        if not 1 <= steps <= m.num_timesteps:
            raise ConfigError(f'eval.samplers entry {name!r} must be {samplers.sampler_names()} '
                              f'with 1 <= S <= {m.num_timesteps}, e.g. ddim50, ddim50_eta1 or '
                              f'dpmpp2m10_eta1_karras.')
    if config.eval.ode_likelihood_solver:
        try:
            ode.parse(config.eval.ode_likelihood_solver)
        except ValueError as e:
            raise ConfigError(f'eval.ode_likelihood_solver: {e}') from None
    if m.zero_terminal_snr:
        _check_zero_terminal_snr(config)
    if not 0 <= config.eval.nll_timesteps <= m.num_timesteps:
        raise ConfigError(f'eval.nll_timesteps must be in [0, {m.num_timesteps}] (0: all), got '
                          f'{config.eval.nll_timesteps}.')
    if not toy:
        if config.data.dequantize or config.data.binarize:
            raise ConfigError('DDPM models the discrete pixel levels (discretised decoder, Ho et '
                              'al. Eq. 13): set data.dequantize=False and data.binarize=False.')
        if config.data.scale != '-11':
            raise ConfigError("DDPM's prior N(0, I) matches data in [-1, 1]: set "
                              "data.scale='-11'.")


def _check_zero_terminal_snr(config) -> None:
    """SNR 0 at T: eps prediction cannot give x_0 there, and the samplers and likelihood that
    work in log SNR or sigma = sqrt((1 - ab) / ab) (DPM-Solver++, Heun, the probability-flow ODE)
    would start at infinity."""
    if config.model.prediction == 'eps':
        raise ConfigError("model.zero_terminal_snr needs model.prediction='v' (or 'x0'): at SNR 0 "
                          "the noise prediction says nothing about x_0.")
    specs = [samplers.sampler_spec(config.sampler)] + [
        samplers.sampler_spec(config.sampler, n) for n in config.eval.samplers]
    kinds = {s.kind for s in specs}
    spread = {diffusion.resolved_spacing(s.kind, s.spacing) for s in specs}
    if ({'dpmpp2m', 'heun'} & kinds or {'logsnr', 'karras'} & spread
            or config.eval.ode_likelihood_solver):
        raise ConfigError('model.zero_terminal_snr samples with ancestral or ddim only, on uniform '
                          'spacing, without eval.ode_likelihood_solver: DPM-Solver++, Heun, the '
                          'logsnr and karras spacings and the probability-flow ODE start at '
                          'infinite sigma there.')


# ------------------------------------------------------------------------------------------------
# The network and its predictions

def network(config, num_classes: int):
    m = config.model
    if m.architecture == 'mlp':
        return unet.MLPDenoiser(tuple(m.hidden), m.embed_dim, num_classes)
    return unet.UNet(m.channels, tuple(m.channel_mults), m.num_res_blocks,
                     tuple(m.attention_resolutions), m.dropout, num_classes,
                     num_heads=m.num_heads, remat=config.train.remat == 'blocks')


def schedule(config) -> diffusion.Schedule:
    m = config.model
    return diffusion.make_schedule(m.schedule, m.num_timesteps, m.beta_start, m.beta_end,
                                   m.zero_terminal_snr)


def _alphas_cumprod(config) -> jax.Array:
    return jnp.asarray(schedule(config).alphas_cumprod, jnp.float32)


def make_denoiser(config, params, labels: jax.Array | None, guidance_scale: float | None = None,
                  *, spec: samplers.SamplerSpec | None = None) -> Callable:
    """denoise(x_t, t [B]) -> (eps_hat, x0_hat), with classifier-free guidance at the spec's
    guidance_scale (`guidance_scale` if given) and x0_hat clipped to the data range when the
    spec's clip_denoised (spec: default the config's sampler). `labels` [B]: a conditional model's
    labels (None: no label)."""
    spec = spec or samplers.sampler_spec(config.sampler)
    net = network(config, labels_lib.num_classes(config.data, config.model))
    ab = _alphas_cumprod(config)
    scale = spec.guidance_scale if guidance_scale is None else guidance_scale
    pred = config.model.prediction

    def output(x, t, y):
        return net.apply({'params': params}, x, t, y)

    def denoise(x, t):
        # Guidance mixes the network's own outputs: eps and x0 are both affine in them with the
        # same weights, so this is guidance in eps (Ho & Salimans) for every prediction target,
        # and x0 comes from the model's own target (with v at SNR 0, eps cannot give it).
        if not config.model.conditional or labels is None or scale == 0.0:
            out = output(x, t, None)
        elif scale == 1.0:
            out = output(x, t, labels)
        else:  # one pass over [conditional; unconditional]
            none = jnp.full_like(labels, labels_lib.num_classes(config.data, config.model))
            both = output(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                          jnp.concatenate([labels, none]))
            cond, uncond = jnp.split(both, 2)
            out = uncond + scale * (cond - uncond)
        eps, x0 = diffusion.predict(pred, out, x, ab[t])
        if spec.clip_denoised:
            x0 = jnp.clip(x0, *data_lib.value_range(config.data))
            eps = diffusion.eps_from_x0(x, x0, ab[t])
        return eps, x0

    return denoise


# ------------------------------------------------------------------------------------------------
# Objectives: (config, params, batch, rng, dropout_rng) -> (loss [B], metrics of the batch [B])

def _noised(config, batch: Batch, rng: jax.Array):
    """(t [B], eps, x_t, labels or None): each example's draw keyed by its index."""
    x0, index = batch['image'], batch['index']
    k_t, k_eps, k_drop = jax.random.split(rng, 3)
    t = noise.randint(k_t, index, 0, config.model.num_timesteps)
    eps = noise.normal(k_eps, index, x0.shape[1:])
    x_t = diffusion.q_sample(x0, _alphas_cumprod(config)[t], eps)
    labels = None
    if config.model.conditional:
        drop = noise.uniform(k_drop, index, ()) < config.loss.label_dropout
        labels = jnp.where(drop, labels_lib.num_classes(config.data, config.model), batch['label'])
    return t, eps, x_t, labels


def _apply(config, params, x_t, t, labels, dropout_rng):
    net = network(config, labels_lib.num_classes(config.data, config.model))
    return net.apply({'params': params}, x_t, t, labels, train=True,
                     rngs={'dropout': dropout_rng})


def simple_objective(config, params, batch: Batch, rng: jax.Array, dropout_rng: jax.Array):
    """L_simple (Ho Eq. 14) for the configured target: mean over pixels of the squared error,
    weighted by min-SNR-gamma when loss.min_snr_gamma > 0 (`diffusion.min_snr_weight`)."""
    t, eps, x_t, labels = _noised(config, batch, rng)
    out = _apply(config, params, x_t, t, labels, dropout_rng)
    ab = _alphas_cumprod(config)[t]
    goal = diffusion.target(config.model.prediction, batch['image'], eps, ab)
    loss = jnp.mean((out - goal) ** 2, axis=tuple(range(1, out.ndim)))
    if config.loss.min_snr_gamma:
        loss = loss * diffusion.min_snr_weight(config.model.prediction, ab,
                                               config.loss.min_snr_gamma)
    return loss, t


def vlb_objective(config, params, batch: Batch, rng: jax.Array, dropout_rng: jax.Array):
    """T times the bound's term at a uniform t, plus the prior term: an unbiased estimate of the
    whole variational bound, in nats per dimension."""
    t, eps, x_t, labels = _noised(config, batch, rng)
    out = _apply(config, params, x_t, t, labels, dropout_rng)
    x0 = batch['image']
    ab = _alphas_cumprod(config)
    _, x0_hat = diffusion.predict(config.model.prediction, out, x_t, ab[t])
    chain = _full_chain(config)
    step = jax.tree.map(lambda a: jnp.asarray(a)[t], chain)
    term = diffusion.vlb_term(x0, x_t, x0_hat, step,
                              diffusion.decoder_variance(chain, config.sampler.variance),
                              variance=config.sampler.variance, decoder=_decoder(config))
    dims = int(np.prod(x0.shape[1:]))
    prior = diffusion.prior_kl(x0, float(schedule(config).alphas_cumprod[-1]))
    return (config.model.num_timesteps * term + prior) / dims, t


OBJECTIVES: dict[str, Callable] = {
    'simple': simple_objective,
    'vlb': vlb_objective,
}


# ------------------------------------------------------------------------------------------------
# The family contract

def init(config, rng: jax.Array, example_batch: Batch) -> dict[str, PyTree]:
    x = jnp.asarray(example_batch['image'][:1])
    net = network(config, labels_lib.num_classes(config.data, config.model))
    labels = jnp.zeros((1,), jnp.int32) if config.model.conditional else None
    params = net.init(rng, x, jnp.zeros((1,), jnp.int32), labels)['params']
    return train_state.create(config, params)


def train_step(config, state, batch: Batch, rng: jax.Array):
    objective = config_lib.objective(OBJECTIVES, config.objective)
    # The loss by quarter of the timesteps (q0: the least noise), as Nichol & Dhariwal log it.
    return train_state.step_by_noise_level(
        config, state, batch, rng, objective, lambda t: (4 * t) // config.model.num_timesteps)


def _full_chain(config) -> diffusion.Steps:
    return diffusion.steps(schedule(config), np.arange(config.model.num_timesteps))


def _decoder(config) -> Callable:
    """decoder(x0, mean, var) -> elementwise log p(x0 | x_1): discretised to the data's levels for
    images, a density for continuous toy data."""
    if data_lib.is_toy(config.data.name):
        return diffusion.gaussian_log_density
    low, high = data_lib.value_range(config.data)
    half_bin = (high - low) / (2 * data_lib.dataset_info(config.data).max_value)
    return lambda x, mean, var: diffusion.discretized_gaussian_log_likelihood(
        x, mean, var, half_bin, low, high)


def log_likelihood(config, params, batch: Batch, rng: jax.Array,
                   num_timesteps: int | None = None) -> jax.Array:
    """The variational bound on log p(x) per example [B], nats (`diffusion.variational_bound`):
    all T terms, or an unbiased stratified estimate from `num_timesteps` (default
    eval.nll_timesteps; 0: all) of them. A conditional model is evaluated without labels (its
    unconditional half, trained by label dropout), so its bound is on log p(x) and compares with
    every other model's."""
    k = config.eval.nll_timesteps if num_timesteps is None else num_timesteps
    net = network(config, labels_lib.num_classes(config.data, config.model))
    ab = _alphas_cumprod(config)

    def predict_x0(x_t, t):
        out = net.apply({'params': params}, x_t, t, None)
        return diffusion.predict(config.model.prediction, out, x_t, ab[t])[1]

    return -diffusion.variational_bound(schedule(config), predict_x0, batch['image'],
                                        batch['index'], rng, decoder=_decoder(config),
                                        variance=config.sampler.variance, num_terms=k)


def ode_log_likelihood(config, params, batch: Batch, rng: jax.Array) -> jax.Array:
    """log p(y) [B] in nats through the probability-flow ODE (`diffusion.probability_flow`) from
    s = 0 to T - 1, integrated evenly in log sigma (`diffusion.in_log_sigma`), where the base is
    N(0, I) (genmodels/metrics/ode_likelihood.py: images are
    dequantised, their divergence is Hutchinson's). A conditional model is scored without
    labels."""
    net = network(config, labels_lib.num_classes(config.data, config.model))
    pred = config.model.prediction

    def eps_fn(x, s, ab):
        return diffusion.predict(pred, net.apply({'params': params}, x, s, None), x, ab)[0]

    ab = schedule(config).alphas_cumprod
    field, tau_data, tau_base = diffusion.in_log_sigma(diffusion.probability_flow(eps_fn, ab), ab)
    return ode_likelihood.log_likelihood(config, field, batch, rng, tau_data, tau_base)


def sample(config, params, rng: jax.Array, num: int, labels=None, *,
           spec: samplers.SamplerSpec | None = None, keep: int = 0,
           x_T: jax.Array | None = None):
    """x_0 [num, H, W, C] by the reverse chain of `spec` (default: the config's sampler) from x_T
    (default: drawn from N(0, I)), in the data's value range; a conditional model draws
    class-balanced labels (i mod K) when `labels` is None. With keep > 0 returns (x_0, the chain
    at `keep` points [keep, num, ...], x_T first)."""
    spec = spec or samplers.sampler_spec(config.sampler)
    shape = data_lib.dataset_info(config.data).shape
    if config.model.conditional and labels is None:
        labels = labels_lib.balanced(num, labels_lib.num_classes(config.data, config.model))
    k_x, k_chain = jax.random.split(rng)
    if x_T is None:
        x_T = jax.random.normal(k_x, (num,) + tuple(shape))
    chain = diffusion.steps(schedule(config),
                            diffusion.kept_timesteps(schedule(config), spec.kind, spec.num_steps,
                                                     spec.spacing))
    x0, trace = samplers.run_chain(spec.kind, make_denoiser(config, params, labels, spec=spec),
                                    x_T, chain, k_chain, variance=spec.variance, eta=spec.eta,
                                    keep=keep)
    if spec.clip_denoised:
        x0 = jnp.clip(x0, *data_lib.value_range(config.data))
    return (x0, trace) if keep else x0


def with_sampler(config, name: str) -> ml_collections.ConfigDict:
    """`config` sampling with the eval.samplers entry `name` (its eta and spacing, if it names
    them)."""
    kind, steps, eta, spacing = parse_sampler(name)
    variant = copy.deepcopy(config)
    variant.sampler.name, variant.sampler.num_steps = kind, steps
    if eta is not None:
        variant.sampler.eta = eta
    if spacing is not None:
        variant.sampler.spacing = spacing
    return variant


def _sampler_metrics(config, params, rng: jax.Array) -> dict[str, float]:
    """For each eval.samplers entry: the sample metrics of eval.num_samples images, suffixed with
    the sampler's name (fid_mnist_classifier_ddim50, ...), and sample_seconds_per_image_<name>."""
    def make_batch(name):
        spec = samplers.sampler_spec(config.sampler, name)
        return lambda key: sample(config, params, key, config.eval.batch_size, spec=spec)

    return sample_quality.per_sampler(config, config.eval.samplers, make_batch, rng)


def _toy_modes(config, params, rng: jax.Array) -> dict[str, float]:
    toy = data_lib.toy_distribution(config.data.name)
    if toy.modes is None:
        return {}
    points = np.asarray(sample(config, params, rng, 2500)).reshape(2500, -1)
    return modes_lib.of_toy_samples(points, toy)


def evaluate(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> dict[str, float]:
    """The test NLL bound (nll_nats, nll_bits_per_dim: all T terms unless eval.nll_timesteps);
    toys: mode coverage; a conditional model on MNIST digits: label_accuracy of its samples at
    the sampler's guidance scale; each eval.samplers entry: its sample metrics and time."""
    k_nll, k_modes, k_labels, k_samplers = jax.random.split(rng, 4)
    fn = jax.jit(lambda p, b: log_likelihood(config, p, b, k_nll))
    ll = data_lib.map_batches(lambda b: {'ll': fn(params, b)}, data, config.eval.batch_size)['ll']
    dims = int(np.prod(data['image'].shape[1:]))
    if data_lib.is_toy(config.data.name):
        prep = data_lib.preprocessing(config.data)
    else:
        low, high = data_lib.value_range(config.data)
        levels = data_lib.dataset_info(config.data).max_value + 1
        prep = data_lib.Preprocessing('discrete', num_levels=levels, low=low, high=high)
    out = {**units.likelihood_record(-float(np.mean(ll)), dims, prep),
           'nll_timesteps': config.eval.nll_timesteps or config.model.num_timesteps}
    if config.eval.ode_likelihood_solver:
        out |= ode_likelihood.evaluate(config, data, jax.random.fold_in(k_nll, 1),
                                       lambda b, r: ode_log_likelihood(config, params, b, r))
    if data_lib.is_toy(config.data.name):
        return out | _toy_modes(config, params, k_modes)
    if config.model.conditional and sample_quality.has_classifier(config.data.name):
        out['label_accuracy'] = _label_accuracy(config, params, k_labels)
    return out | _sampler_metrics(config, params, k_samplers)


LABEL_SAMPLES = 1000  # generated images read by the shipped classifier for label_accuracy


def _label_accuracy(config, params, rng: jax.Array) -> float:
    def generate(key, asked):
        return sample(config, params, key, config.eval.batch_size, labels=asked)

    asked, read = sample_quality.read_labels(config, generate, rng, LABEL_SAMPLES,
                                             labels_lib.num_classes(config.data, config.model))
    return labels_lib.label_accuracy(read, asked)


STRIP_POINTS = 10  # columns of the denoising strip: x_T, ..., x_0


def figures(config, params, data: dict[str, np.ndarray], rng: jax.Array, out_dir: str) -> list[str]:
    """Samples (viz.save_samples); for images also the denoising strip, one row per sample from
    x_T (left) to x_0 (right) at evenly spaced steps of the sampler, and a conditional model's rows
    of one class each (same x_T down each column)."""
    s = config.sampler
    samples = sample(config, params, rng, viz.num_samples(config.data))
    paths = viz.save_samples(config.data, samples, f'{out_dir}/samples.png',
                             f'DDPM samples ({s.name}, {s.num_steps} steps)',
                             reference=data['image'])
    if data_lib.is_toy(config.data.name):
        return paths
    lo, hi = data_lib.value_range(config.data)
    x0, trace = sample(config, params, jax.random.fold_in(rng, 1), 8, keep=STRIP_POINTS - 1)
    strip = np.concatenate([np.asarray(trace), np.asarray(x0)[None]])   # [points, 8, H, W, C]
    rows = [np.clip(strip[:, i], lo, hi) for i in range(strip.shape[1])]
    paths.append(viz.save_rows(rows, f'{out_dir}/denoising.png',
                               ['x_T -> x_0'] * len(rows), lo, hi))
    if config.model.conditional:
        k, cols = labels_lib.num_classes(config.data, config.model), 10
        x_T = jax.random.normal(jax.random.fold_in(rng, 2), (cols,) + x0.shape[1:])
        grid = sample(config, params, jax.random.fold_in(rng, 3), k * cols,
                      labels=jnp.repeat(jnp.arange(k), cols), x_T=jnp.tile(x_T, (k, 1, 1, 1)))
        rows = list(np.asarray(grid).reshape((k, cols) + x0.shape[1:]))
        paths.append(viz.save_rows(rows, f'{out_dir}/classes.png',
                                   [f'label {c}, guidance {s.guidance_scale:g}' for c in range(k)],
                                   lo, hi))
    return paths
