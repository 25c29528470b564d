"""The family contract (v2), stated once, and the registry: config.family -> family module.

The trainer and the evaluation call a family only through what is listed here; they never know
which family they run. DESIGN.md summarises this; where the two differ, this text is right.

Required of a deep family (trained step by step):

    CONFIG_SCHEMA
        {section: {key: type}}: its own config sections (`model`, `loss`, and any it adds, e.g.
        a GAN's `disc_optimizer`). A section whose schema is `config.OPTIMIZER_SCHEMA` is validated
        as an optimizer; build it with `train_state.make_optimizer(section, num_updates)`. A
        section the shared schema already has (e.g. `eval`) gains the family's keys.
    init(config, rng, example_batch) -> state
        A dict pytree with a scalar int32 'step' (0). `example_batch` is
        `train_state.example_batch(info)`: one all-zero example of the dataset.
    train_step(config, state, batch, rng) -> (state, metrics)
        Pure and jitted by the trainer, which shards the batch over devices, replicates the state
        and donates it. `metrics` is a flat dict of scalar arrays; every float metric is checked
        for NaN/Inf. Per-example randomness comes from genmodels.nn.noise (keyed by batch['index']).
        Gradients come from `train_state.value_and_grad(config, loss_fn, params, batch)`, which
        applies train.grad_accum_steps (micro-batches) and train.compute_dtype (bfloat16 layers)
        for every family alike.
    evaluate(config, params, data, rng) -> dict[str, float]
        Test metrics of the split `data` ({'image': [N, H, W, C], 'label': [N]}), flat keys with
        units in the name (nll_nats, nll_bits_per_dim, ...).
    figures(config, params, data, rng, out_dir) -> list[str]
        PNG paths written into out_dir.

Optional, each with the default that `eval_params`, `progress_metrics`, ... below apply:

    eval_params(config, state) -> params
        What sampling, evaluation and figures use. Default: state['ema_params'] when
        config.eval.use_ema, else state['params'].
    sample(config, params, rng, num, labels=None) -> [num, H, W, C] in the data's value range
        A family that samples gets FID/KID/IS/precision/recall; a conditional family draws
        class-balanced labels itself when `labels` is None.
    with_sampler(config, name) -> config
        A copy of `config` whose sampler section draws with the named sampler, an eval.samplers
        entry ('ddim50', 'heun18', 'euler10'): what benchmarks time each named sampler by.
    log_likelihood(config, params, batch, rng) -> [B]
        log p(x) or a lower bound on it, nats per example.
    PROGRESS_METRICS = ('loss',)
        The metrics the progress bar shows.
    RESUMABLE_KEYS = ()
        Config keys ('section.key') that may change when a run resumes or is evaluated again (a
        sampler's number of steps, a guidance scale), beside the trainer's own.
    ADDED_KEYS = {}
        {'section.key': value}: keys the family added to its schema after runs were saved
        without them, each with the value that reproduces those runs. `read_saved` fills them
        into a saved config of this family, so its older workdirs resume and evaluate (a section
        that is new is created); the trainer's own sit in `config.ADDED_KEYS`.
    OBJECTIVES = {name: pure function}
        Where the family has a choice of losses. config.objective names an entry, or a function
        by import path (`package.module:function`, `path/to/file.py:function`) that takes the same
        parameters; families look it up with `genmodels.config.objective(OBJECTIVES, config.objective)`.
    check_config(config)
        Raises config.ConfigError for values the schema's types cannot catch.
    training_pairs(config, workdir, restore) -> {'image': [N, ...], ...} or None
        Arrays that replace the train split (a reflow's noise and its teacher's images), made
        once and kept in the workdir; `restore(workdir)` -> (config, state, step) loads another
        run's latest checkpoint (the teacher). Default: None, the dataset's train split.

A classical family instead exports `fit(config, data, rng) -> (params, metrics)` (closed form or
EM; no `init`/`train_step`), with `evaluate`, `figures`, `sample`, `log_likelihood` as above, taking
the fitted params. The trainer fits it once on the whole train split and checkpoints the result.

Several seeds (`train.num_seeds`) are the trainer's business: it vmaps `init` and `train_step` over a
leading seed axis of the state, so a family is always written for one model.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import ml_collections

from genmodels import config as config_lib, data
from genmodels.config import is_fit  # noqa: F401 - part of this module's interface

PyTree = Any

_MODULES = {
    'autoencoder': 'genmodels.families.autoencoder',
    'autoregressive': 'genmodels.families.autoregressive',
    'classifier': 'genmodels.families.classifier',
    'ddpm': 'genmodels.families.ddpm',
    'edm': 'genmodels.families.edm',
    'flow': 'genmodels.families.flow',
    'flow_matching': 'genmodels.families.flow_matching',
    'gan': 'genmodels.families.gan',
    'gaussian': 'genmodels.families.gaussian_mle',
    'gmm': 'genmodels.families.gmm',
    'kde': 'genmodels.families.kde',
    'score': 'genmodels.families.score',
    'vae': 'genmodels.families.vae',
}


def names() -> list[str]:
    return sorted(_MODULES)


def register(name: str, module: str) -> None:
    """Adds a family by module path (e.g. one defined outside genmodels, or in a test)."""
    _MODULES[name] = module


def get(name: str) -> ModuleType:
    if name not in _MODULES:
        raise ValueError(f'unknown family {name!r}; known families: {", ".join(names())}.')
    return importlib.import_module(_MODULES[name])


def validated(config: ml_collections.ConfigDict, resolve_objective: bool = True) -> ModuleType:
    """The family module config.family names, after validating `config` against it. Evaluation
    passes resolve_objective=False: it never uses the objective, so a config read from a workdir
    never imports code that its `objective` names."""
    if 'family' not in config or not isinstance(config.family, str):
        raise config_lib.ConfigError(f'config.family must name a family, one of {names()}.')
    family = get(config.family)
    config_lib.validate(config, family, resolve_objective)
    return family


def provenance(family: ModuleType, config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What identifies a run's inputs beyond its config, recorded in its workdir and checked on
    resume: the data's identity (genmodels.data.identity) and, for an objective given by import
    path, the sha256 of its source file."""
    record = {'data': data.identity(config.data)}
    source = config_lib.objective_source(getattr(family, 'OBJECTIVES', {}), config.objective)
    if source is not None:
        record['objective_sha256'] = source
    return record


# ------------------------------------------------------------------------------------------------
# The optional parts, with their defaults

def eval_params(family: ModuleType, config: ml_collections.ConfigDict, state: PyTree) -> PyTree:
    if hasattr(family, 'eval_params'):
        return family.eval_params(config, state)
    if is_fit(family):
        return state['params']
    return state['ema_params'] if config.eval.use_ema else state['params']


def progress_metrics(family: ModuleType) -> tuple[str, ...]:
    return tuple(getattr(family, 'PROGRESS_METRICS', ('loss',)))


def resumable_keys(family: ModuleType) -> tuple[str, ...]:
    """Keys that may change on resume or a second evaluation: the shared ones, each optimizer's
    learning rate (lowering it is the way on after a NaN), and the family's own."""
    rates = tuple(f'{section}.learning_rate'
                  for section, schema in config_lib.full_schema(family).items()
                  if schema is config_lib.OPTIMIZER_SCHEMA)
    return config_lib.RESUMABLE_KEYS + rates + tuple(getattr(family, 'RESUMABLE_KEYS', ()))


def added_keys(name: str) -> dict[str, Any]:
    """The ADDED_KEYS of the family `name` ({} for a family without any, or an unknown name,
    which `validated` reports)."""
    return dict(getattr(get(name), 'ADDED_KEYS', {})) if name in _MODULES else {}


def read_saved(workdir: str) -> dict | None:
    """`config.read_saved(workdir)` with the keys the saved run's family added filled in."""
    return config_lib.read_saved(workdir, added_keys)


def training_pairs(family: ModuleType, config: ml_collections.ConfigDict, workdir: str,
                   restore) -> dict | None:
    if hasattr(family, 'training_pairs'):
        return family.training_pairs(config, workdir, restore)
    return None
