"""Generative adversarial networks (Goodfellow et al. 2014): MLP GAN, DCGAN, conditional DCGAN and
InfoGAN, one `train_step` holding both players and both optimizers.

    min_G max_D V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))]        (Goodfellow et al., Eq. 1)

This module is the family contract (genmodels.families); its parts live beside it:
    networks     G and D (MLP, DCGAN, conditional, InfoGAN's Q head), G's latents and codes
    objectives   OBJECTIVES (D's and G's losses), R1, the gradient penalty, top-k G updates,
                 InfoGAN's mutual-information bound
    augment      DiffAugment of every image D sees (loss.augment)
    truncation   Jacobian truncation of G's prior for sampling (sampler.jacobian_truncation)
    updates      D's update (loss.n_disc per step) and G's, from which `train_step` is built
G's weights are averaged (EMA) for sampling and evaluation when eval.use_ema.

Results: docs/results/gan.md
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmodels import config as config_lib, data as data_lib, viz
from genmodels.classical import kde as kde_lib
from genmodels.config import ConfigError
from genmodels.families.gan.augment import AUGMENTS, diff_augment
from genmodels.families.gan.networks import (Discriminator, Generator, fourier_features, g_forward,
                                             join_codes, latents, networks)
from genmodels.families.gan.objectives import (OBJECTIVES, gradient_penalty, info_lower_bound,
                                               info_weight_scale, r1_penalty, r1_subset,
                                               top_k_fraction, top_k_mean)
from genmodels.families.gan.truncation import (MAX_TRUNCATION, jacobian_norms,
                                               jacobian_truncation, truncation_threshold)
from genmodels.families.gan.updates import d_update, g_update, optimizers, players
from genmodels.metrics import labels as labels_lib, modes as modes_lib, sample_quality
from genmodels.nn import noise

__all__ = [
    'ADDED_KEYS', 'AUGMENTS', 'CONFIG_SCHEMA', 'ConfigError', 'Discriminator', 'Generator',
    'MAX_TRUNCATION', 'OBJECTIVES', 'PROGRESS_METRICS', 'Q_READER', 'RESUMABLE_KEYS',
    'check_config', 'diff_augment', 'eval_params', 'evaluate', 'figures', 'fourier_features',
    'gradient_penalty', 'info_lower_bound', 'info_weight_scale', 'init', 'jacobian_norms',
    'jacobian_truncation', 'join_codes', 'latents', 'networks', 'q_codes', 'r1_penalty',
    'r1_subset', 'sample', 'top_k_fraction', 'top_k_mean', 'train_step', 'truncation_threshold',
]

PyTree = Any
Batch = dict[str, jax.Array]

CONFIG_SCHEMA = {
    'model': {
        'architecture': str,      # 'mlp' or 'dcgan'
        'latent_dim': int,        # z ~ N(0, I)
        'hidden': tuple,          # MLP: G's hidden widths; D mirrors them
        'channels': tuple,        # DCGAN: D's channels per stride-2 level; G mirrors them
        'conditional': bool,      # class-conditional G and projection D
        'info_categorical': int,  # InfoGAN: classes of the categorical code (0: none)
        'info_continuous': int,   # InfoGAN: number of continuous codes ~ U[-1, 1]
        'spectral_norm': bool,    # spectral normalisation of D's layers
        'init_std': float,        # weights ~ N(0, init_std^2) (DCGAN: 0.02); 0: LeCun normal
        'fourier_features': int,  # MLP D on toys: sin/cos of this many random projections (0: off)
        'fourier_scale': float,   # their frequencies ~ N(0, fourier_scale^2), cycles per unit
        'fc_hidden': int,         # DCGAN: a dense layer of this width first in G, last in D (0: none)
        'disc_batch_norm': bool,  # DCGAN: batch norm in D (by batch statistics) and Q's head
    },
    'loss': {
        'n_disc': int,            # D steps per G step
        'gp_weight': float,       # WGAN-GP's penalty weight (objective 'wgan_gp' only)
        'r1_weight': float,       # R1 penalty on real data, any objective (0: off)
        'r1_fraction': float,     # share of the real batch R1 is computed on (1: all)
        'info_weight': float,     # lambda of InfoGAN's mutual-information term (categorical code)
        'info_continuous_weight': float,  # lambda of its continuous codes' term
        'info_decay_fraction': float,  # last share of train.num_steps over which both lambdas
                                       # fall linearly to 0 (0: off)
        'top_k': float,           # fraction of G's samples its update keeps at the end (1: all)
        'top_k_decay_steps': int,  # G steps over which the kept fraction falls from 1 to top_k
        'augment': str,           # DiffAugment of D's inputs: '', 'translation', 'cutout', ...
    },
    'disc_optimizer': config_lib.OPTIMIZER_SCHEMA,  # D's; config.optimizer is G's
    'sampler': {
        'jacobian_truncation': float,  # share of z's prior rejected where |dG/dz| is largest
    },
}
# Sampler settings may change on an existing workdir: eval.py --set sampler.jacobian_truncation=0.03
RESUMABLE_KEYS = ('sampler.jacobian_truncation',)
PROGRESS_METRICS = ('d_loss', 'g_loss')

# Keys added to the schema after runs were saved without them, with the value that reproduces
# those runs: genmodels.families.read_saved fills them into a saved GAN config.
ADDED_KEYS = {
    'loss.top_k': 1.0,
    'loss.top_k_decay_steps': 0,
    'loss.r1_fraction': 1.0,
    'loss.augment': '',
    'loss.info_continuous_weight': 1.0,
    'loss.info_decay_fraction': 0.0,
    'model.fourier_features': 0,
    'model.fourier_scale': 1.0,
    'model.fc_hidden': 0,
    'model.disc_batch_norm': False,
    'sampler.jacobian_truncation': 0.0,
}


def check_config(config: ml_collections.ConfigDict) -> None:
    m, loss = config.model, config.loss
    if m.architecture not in ('mlp', 'dcgan'):
        raise ConfigError(f"model.architecture must be 'mlp' or 'dcgan', got "
                          f"{m.architecture!r}.")
    if min(m.latent_dim, loss.n_disc) < 1 or min(m.info_categorical, m.info_continuous) < 0:
        raise ConfigError('model.latent_dim and loss.n_disc must be >= 1, the InfoGAN code sizes '
                          '>= 0.')
    if m.init_std < 0:
        raise ConfigError(f'model.init_std must be >= 0 (0: LeCun normal), got {m.init_std}.')
    if m.fourier_features < 0 or m.fourier_scale <= 0:
        raise ConfigError(f'model.fourier_features must be >= 0 (0: off) and model.fourier_scale '
                          f'> 0, got {m.fourier_features} and {m.fourier_scale}.')
    if m.fourier_features and m.architecture != 'mlp':
        raise ConfigError("model.fourier_features feeds the MLP discriminator only: set it to 0 "
                          "or model.architecture='mlp'.")
    if m.fc_hidden < 0:
        raise ConfigError(f'model.fc_hidden must be >= 0 (0: none), got {m.fc_hidden}.')
    if (m.fc_hidden or m.disc_batch_norm) and m.architecture != 'dcgan':
        raise ConfigError("model.fc_hidden and model.disc_batch_norm belong to the DCGAN: set "
                          "them to 0 and False, or model.architecture='dcgan'.")
    if m.disc_batch_norm and (loss.r1_weight > 0 or config.objective == 'wgan_gp'):
        raise ConfigError('model.disc_batch_norm: a gradient penalty of a batch-normalised D is '
                          'not per example; set loss.r1_weight=0 and use another objective than '
                          'wgan_gp, or disc_batch_norm=False.')
    if not 0 < loss.r1_fraction <= 1:
        raise ConfigError(f'loss.r1_fraction must be in (0, 1] (1: the whole batch), got '
                          f'{loss.r1_fraction}.')
    if not 0 < loss.top_k <= 1 or loss.top_k_decay_steps < 0:
        raise ConfigError(f'loss.top_k must be in (0, 1] (1: off) and loss.top_k_decay_steps '
                          f'>= 0, got {loss.top_k} and {loss.top_k_decay_steps}.')
    unknown = set(filter(None, loss.augment.split(','))) - set(AUGMENTS)
    if unknown:
        raise ConfigError(f'loss.augment={loss.augment!r}: unknown {sorted(unknown)}; use a comma-'
                          f'separated subset of {list(AUGMENTS)}, or \'\' for none.')
    if loss.augment and data_lib.is_toy(config.data.name):
        raise ConfigError("loss.augment transforms images; toy data are points: set it to ''.")
    if not 0 <= config.sampler.jacobian_truncation <= MAX_TRUNCATION:
        raise ConfigError(f'sampler.jacobian_truncation must be in [0, {MAX_TRUNCATION}] (0: '
                          f'off), got {config.sampler.jacobian_truncation}.')
    if not 0 <= loss.info_decay_fraction <= 1:
        raise ConfigError(f'loss.info_decay_fraction must be in [0, 1] (0: off), got '
                          f'{loss.info_decay_fraction}.')
    if min(loss.gp_weight, loss.r1_weight, loss.info_weight, loss.info_continuous_weight) < 0:
        raise ConfigError('loss.gp_weight, r1_weight, info_weight and info_continuous_weight must '
                          'be >= 0.')
    if config.objective == 'wgan_gp' and loss.gp_weight <= 0:
        raise ConfigError('the wgan_gp objective needs loss.gp_weight > 0 (10 in Gulrajani et '
                          'al.).')
    if m.info_categorical == 1:
        raise ConfigError('model.info_categorical must be 0 (none) or at least 2 classes.')
    if data_lib.is_toy(config.data.name) and m.architecture != 'mlp':
        raise ConfigError("toy data are points, not images: use model.architecture='mlp'.")
    if not data_lib.is_toy(config.data.name) and config.data.scale != '-11':
        raise ConfigError("G's tanh output covers [-1, 1]: set data.scale='-11'.")


def init(config, rng: jax.Array, example_batch: Batch) -> dict[str, PyTree]:
    x = jnp.asarray(example_batch['image'][:1])
    labels = jnp.asarray(example_batch['label'][:1])
    g, d = networks(config, x.shape[1:])
    k_g, k_d, k_sn = jax.random.split(rng, 3)
    g_in, _ = latents(config, k_g, jnp.zeros((1,), jnp.int32))
    g_vars = g.init(k_g, g_in, labels, train=False)
    d_vars = d.init({'params': k_d}, x, labels)
    tx_g, tx_d = optimizers(config)
    return {'step': jnp.zeros((), jnp.int32), 'g': g_vars, 'd': d_vars,
            'g_opt': tx_g.init(g_vars['params']), 'd_opt': tx_d.init(d_vars['params']),
            'g_ema': jax.tree.map(jnp.copy, g_vars['params'])}


def train_step(config, state, batch: Batch, rng: jax.Array):
    """1. DISCRIMINATOR: loss.n_disc steps, each with fresh z (same real batch);
    2. GENERATOR: one step against the updated D (updates.py)."""
    real, index = batch['image'], batch['index']
    labels = batch['label'] if config.model.conditional else jnp.zeros_like(batch['label'])
    p = players(config, real.shape[1:], state['step'])
    # A Python loop, not lax.scan: XLA:CPU sends the convolutions of a loop body to a generic
    # kernel (its canonicalisation pass only rewrites top-level ones), which measured 77x slower
    # on the backward pass of D's second convolution (benchmarks/bench_dcgan_step.py --profile).
    carry = (state['d'], state['d_opt'])
    for i in range(config.loss.n_disc):
        carry, d_terms = d_update(config, p, state['g'], carry, real, index, labels, rng, i)
    d_vars, d_opt = carry  # d_terms: the last D step's values
    g_new, g_terms = g_update(config, p, state, d_vars, real, index, labels, rng)
    new_state = {'step': state['step'] + 1, 'g': g_new['g'], 'd': d_vars, 'g_opt': g_new['g_opt'],
                 'd_opt': d_opt, 'g_ema': g_new['g_ema']}
    return new_state, {**d_terms, **g_terms}


# InfoGAN's evaluation variables hold D's (and so Q's) under this name, a collection G's apply
# leaves alone, so that `evaluate` can read the codes Q gives real digits.
Q_READER = 'discriminator'


def eval_params(config, state) -> PyTree:
    """G's variables for sampling: EMA weights when eval.use_ema, with G's running statistics;
    for InfoGAN also D's variables (`Q_READER`), whose Q head reads real digits' codes."""
    params = state['g_ema'] if config.eval.use_ema else state['g']['params']
    variables = {**state['g'], 'params': params}
    if config.model.info_categorical:
        variables[Q_READER] = state['d']
    return variables


def _g_variables(params: PyTree) -> PyTree:
    """G's own variables from `eval_params`'s: without D's, which G's forward passes would
    otherwise carry as unused inputs."""
    return {name: value for name, value in params.items() if name != Q_READER}


def sample(config, params, rng: jax.Array, num: int, labels=None, codes=None) -> jax.Array:
    """G(z) for z ~ N(0, I), [num, H, W, C] in the data's value range; class-balanced labels
    (i mod K) when conditional and `labels` is None; InfoGAN codes drawn when `codes` is None;
    z truncated where G is steepest when sampler.jacobian_truncation > 0."""
    params = _g_variables(params)
    index = jnp.arange(num)
    g_in, _ = latents(config, rng, index)
    if codes is not None:
        g_in = join_codes(config, g_in[:, :config.model.latent_dim], codes)
    if labels is None:
        labels = labels_lib.balanced(num, max(labels_lib.num_classes(config.data, config.model), 1))
    g, _ = networks(config, data_lib.dataset_info(config.data).shape)
    if config.sampler.jacobian_truncation:
        g_in = jacobian_truncation(config, g, params, rng, g_in, labels)
    return g_forward(g, params, g_in, labels)


CLASS_SAMPLES = 5000  # generated digits read by the MNIST classifier for label metrics
KDE_SAMPLES = 10_000  # samples of G behind the KDE of the toy KL estimate
CODE_SAMPLES = 50  # samples of G per categorical code behind the toy's code_holdings


def _toy_metrics(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> dict[str, float]:
    """Mode coverage of 2,500 samples (grids) and, with a categorical code, which modes its codes
    hold (modes_lib.code_holdings); kl_estimate_nats = E_p[log p(x) - log q(x)]
    over the test points, with q a Gaussian KDE of KDE_SAMPLES samples of G whose bandwidth
    maximises the likelihood of held-out samples (never the test points). G has no density, so
    this is a Parzen-window estimate (Theis et al. 2016): the KDE's smoothing counts against G,
    and it is comparable between GANs, not with a likelihood model's kl_estimate_nats."""
    toy = data_lib.toy_distribution(config.data.name)
    k_modes, k_kde, k_cv = jax.random.split(rng, 3)
    out = {}
    if toy.modes is not None:
        points = np.asarray(sample(config, params, k_modes, 2500)).reshape(2500, -1)
        out |= modes_lib.of_toy_samples(points, toy)
        if k := config.model.info_categorical:  # CODE_SAMPLES points for each code
            codes = np.arange(k * CODE_SAMPLES) % k
            k_code, k_cont = jax.random.split(jax.random.fold_in(k_modes, 1))
            cont = jax.random.uniform(k_cont, (len(codes), config.model.info_continuous),
                                      minval=-1.0, maxval=1.0)
            points = sample(config, params, k_code, len(codes),
                            codes={'categorical': jnp.asarray(codes), 'continuous': cont})
            out |= modes_lib.code_holdings(np.asarray(points).reshape(len(codes), -1), codes, k,
                                           toy.modes, toy.mode_stds)
    samples = sample(config, params, k_kde, KDE_SAMPLES).reshape(KDE_SAMPLES, -1)
    test = jnp.asarray(data['image'].reshape(len(data['image']), -1))
    kde = kde_lib.fit(samples, 'cv', rng=k_cv)
    out['kde_nll_nats'] = -float(jnp.mean(kde_lib.log_density(kde, test)))
    out['kl_estimate_nats'] = out['kde_nll_nats'] + float(jnp.mean(toy.log_prob(test)))
    return out


def _digits_read(config, params, rng: jax.Array, classes: int, as_code: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(asked [N], read [N]): N = CLASS_SAMPLES generated digits asked for class i mod `classes`
    (as the label of a conditional G, or as InfoGAN's categorical code) and the shipped MNIST
    classifier's reading of each."""
    b = config.eval.batch_size

    def generate(key, asked):
        k_sample, k_cont = jax.random.split(key)
        if as_code:
            cont = jax.random.uniform(k_cont, (b, config.model.info_continuous), minval=-1.0,
                                      maxval=1.0)
            return sample(config, params, k_sample, b,
                          codes={'categorical': asked, 'continuous': cont})
        return sample(config, params, k_sample, b, labels=asked)

    return sample_quality.read_labels(config, generate, rng, CLASS_SAMPLES, classes)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _q_logits(d: Discriminator, variables: PyTree, x: jax.Array, k: int) -> jax.Array:
    return d.apply(variables, x, jnp.zeros(x.shape[0], jnp.int32))[1][:, :k]


def q_codes(config, params, images: np.ndarray) -> np.ndarray:
    """int [N]: the categorical code Q reads from each image (its most probable class), in
    batches of eval.batch_size (a batch-normalised D normalises by each batch's statistics)."""
    _, d = networks(config, images.shape[1:])
    b, k = config.eval.batch_size, config.model.info_categorical
    return np.concatenate([np.asarray(jnp.argmax(_q_logits(d, params[Q_READER],
                                                           jnp.asarray(images[i:i + b]), k), -1))
                           for i in range(0, len(images), b)])


def evaluate(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> dict[str, float]:
    """Toys: mode coverage and a KDE-based KL estimate (`_toy_metrics`). MNIST digits: for a
    conditional G, `label_accuracy` (the classifier reads the label G was given); for InfoGAN,
    `code_class_agreement` (its categorical code against the classifier's digit under the best
    one-to-one matching) and `q_class_agreement`, the other direction: the code Q reads from
    each real test digit against its label, matched the same way (Chen et al. 2016 report this
    one, as a 5% classification error). The evaluation adds the sample metrics (FID, KID, IS,
    precision/recall) from `sample`."""
    out = {'sampler_jacobian_truncation': config.sampler.jacobian_truncation}
    if data_lib.is_toy(config.data.name):
        return out | _toy_metrics(config, params, data, rng)
    if not sample_quality.has_classifier(config.data.name):
        return out
    if config.model.conditional:
        asked, read = _digits_read(config, params, jax.random.fold_in(rng, 0),
                                   labels_lib.num_classes(config.data, config.model), as_code=False)
        out['label_accuracy'] = labels_lib.label_accuracy(read, asked)
    if config.model.info_categorical:
        k = config.model.info_categorical
        asked, read = _digits_read(config, params, jax.random.fold_in(rng, 1), k, as_code=True)
        out['code_class_agreement'], _ = labels_lib.code_class_agreement(asked, read, k, 10)
        if 'label' in data:
            out['q_class_agreement'], _ = labels_lib.code_class_agreement(
                q_codes(config, params, data['image']), data['label'], k, 10)
    return out


def _decode(config, params, z, labels, codes) -> np.ndarray:
    """G(z, codes) for given z [N, Z], labels [N] and InfoGAN codes."""
    g, _ = networks(config, data_lib.dataset_info(config.data).shape)
    return np.asarray(g_forward(g, _g_variables(params), join_codes(config, z, codes), labels))


def figures(config, params, data: dict[str, np.ndarray], rng: jax.Array, out_dir: str) -> list[str]:
    """Samples (for 2D toys, over the true log-density); a spherical interpolation between two
    z; a conditional G's rows of one class each (same z down each column); InfoGAN's rows of one
    categorical code each, and for each continuous code the same rows with that code swept
    over [-1, 1] along the columns (z and the other codes fixed)."""
    if data_lib.is_toy(config.data.name):
        return viz.save_samples(config.data, sample(config, params, rng, 2500),
                                f'{out_dir}/samples.png', 'GAN samples', reference=data['image'])
    m, cols = config.model, 10
    lo, hi = data_lib.value_range(config.data)
    paths = [viz.save_grid(np.asarray(sample(config, params, rng, 64)), f'{out_dir}/samples.png',
                           'GAN samples', lo, hi)]
    _, codes = latents(config, rng, jnp.zeros(cols, jnp.int32))  # one draw of the codes
    codes['continuous'] = jnp.zeros_like(codes['continuous'])
    z = noise.normal(rng, jnp.arange(cols), (m.latent_dim,))       # one z per column
    zero = jnp.zeros(cols, jnp.int32)
    interp = _decode(config, params, viz.slerp(z[0], z[1], cols), zero, codes)
    paths.append(viz.save_rows([interp], f'{out_dir}/interpolation.png', ['spherical'], lo, hi))
    if m.conditional:
        k = labels_lib.num_classes(config.data, config.model)
        rows = [_decode(config, params, z, zero + c, codes) for c in range(k)]
        paths.append(viz.save_rows(rows, f'{out_dir}/classes.png',
                                   [f'label {c}' for c in range(k)], lo, hi))
    if m.info_categorical:
        k = m.info_categorical
        rows = [_decode(config, params, z, zero, {**codes, 'categorical': zero + c})
                for c in range(k)]
        paths.append(viz.save_rows(rows, f'{out_dir}/info_categorical.png',
                                   [f'categorical code {c}' for c in range(k)], lo, hi))
    sweep = jnp.linspace(-1.0, 1.0, cols)
    for j in range(m.info_continuous):
        cont = jnp.zeros((cols, m.info_continuous)).at[:, j].set(sweep)
        rows = [_decode(config, params, jnp.broadcast_to(z[0], z.shape), zero,
                        {'categorical': zero + c, 'continuous': cont})
                for c in range(max(m.info_categorical, 1))]
        paths.append(viz.save_rows(rows, f'{out_dir}/info_continuous_{j}.png',
                                   [f'code {j} from -1 to 1' + (f', categorical {c}'
                                    if m.info_categorical else '') for c in range(len(rows))],
                                   lo, hi))
    return paths
