"""Config validation: every key known, every value of the right type, before any work starts.

A config is an `ml_collections.ConfigDict` built by a file in `configs/`. The shared sections are
described by `SCHEMA` below; each family adds the schema of its own `model` and `loss` sections
(`FAMILY.CONFIG_SCHEMA`). A fit family (closed form or EM) has no optimizer and no training loop, so
its config has no `optimizer` section and a `train` section of `FIT_TRAIN_SCHEMA` only: a config
holds only what is read. Defaults live in the config files, never here.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import ml_collections

NoneType = type(None)

# Section -> key -> accepted type(s). `float` also accepts an int; `bool` is never an int.
SCHEMA: dict[str, Any] = {
    'family': str,
    'objective': str,
    'seed': int,
    'data': {
        'name': str,
        'data_dir': (str, NoneType),
        'train_split': str,
        'eval_split': str,
        'scale': str,
        'binarize': bool,
        'dequantize': bool,
        'eval_seed': int,
    },
    'optimizer': {
        'name': str,
        'learning_rate': float,
        'b1': float,
        'b2': float,
        'weight_decay': float,
        'grad_clip_norm': float,
        'schedule': str,
        'warmup_steps': int,
    },
    'train': {
        'batch_size': int,
        'num_steps': int,
        'log_every': int,
        'checkpoint_every': int,
        'keep_checkpoints': int,
        'ema_rate': float,
        'figures': bool,
        'fid_every': int,
        'fid_num_samples': int,
    },
    'eval': {
        'batch_size': int,
        'max_examples': (int, NoneType),
        'num_samples': int,
        'iwae_k': int,
        'use_ema': bool,
    },
}


# The `train` section of a fit family: `fit` runs once on the whole train split.
FIT_TRAIN_SCHEMA: dict[str, Any] = {
    'figures': bool,
}


class ConfigError(ValueError):
    """A config key is unknown or missing, or a value has the wrong type."""


def _type_name(t: Any) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    return ' or '.join('None' if x is NoneType else x.__name__ for x in ts)


def _type_ok(value: Any, expected: Any) -> bool:
    ts = expected if isinstance(expected, tuple) else (expected,)
    for t in ts:
        if t is NoneType and value is None:
            return True
        if t is bool and isinstance(value, bool):
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t in (str, tuple) and isinstance(value, t):
            return True
        if t is tuple and isinstance(value, list):
            return True
    return False


def _check(cfg: Mapping[str, Any], schema: Mapping[str, Any], prefix: str) -> None:
    unknown = sorted(set(cfg.keys()) - set(schema))
    if unknown:
        raise ConfigError(
            f'unknown config key {prefix}{unknown[0]}; known keys in {prefix or "the top level"}: '
            f'{", ".join(sorted(schema))}. Fix the spelling or remove it.')
    missing = sorted(set(schema) - set(cfg.keys()))
    if missing:
        raise ConfigError(f'config is missing key {prefix}{missing[0]}; add it to the config file.')
    for key, expected in schema.items():
        value = cfg[key]
        if isinstance(expected, dict):
            if not isinstance(value, (Mapping, ml_collections.ConfigDict)):
                raise ConfigError(f'config key {prefix}{key} must be a section, got {value!r}.')
            _check(value, expected, f'{prefix}{key}.')
        elif not _type_ok(value, expected):
            raise ConfigError(
                f'config key {prefix}{key} must be {_type_name(expected)}, got {value!r} '
                f'({type(value).__name__}).')


def full_schema(family: Any) -> dict[str, Any]:
    """The shared sections (fit families: without the training loop's) plus the family's own."""
    from genmodels import families  # Local import: families import this module.

    shared = dict(SCHEMA)
    if families.is_fit(family):
        del shared['optimizer']
        shared['train'] = FIT_TRAIN_SCHEMA
    return {**shared, **family.CONFIG_SCHEMA}


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first bad key; checks the shared sections and the family's."""
    from genmodels import families  # Local import: families import this module.

    if 'family' not in config or not isinstance(config.family, str):
        raise ConfigError(f'config.family must name a family, one of {families.names()}.')
    family = families.get(config.family)
    _check(config, full_schema(family), '')
    _check_values(config, family)


def _check_values(config: ml_collections.ConfigDict, family: Any) -> None:
    from genmodels import families  # Local import: families import this module.

    objectives = getattr(family, 'OBJECTIVES', {})
    if objectives and config.objective not in objectives:
        raise ConfigError(
            f'unknown objective {config.objective!r} for family {config.family!r}; '
            f'known: {", ".join(sorted(objectives))}.')
    if families.is_fit(family):
        if config.eval.use_ema:
            raise ConfigError(f'eval.use_ema must be False for the fit family {config.family!r}: '
                              'a fit has no moving average of parameters.')
    else:
        _check_training(config, family)
    if config.eval.batch_size <= 0 or config.eval.iwae_k <= 0:
        raise ConfigError('eval.batch_size and eval.iwae_k must be positive.')
    if config.eval.num_samples < 10:
        raise ConfigError(f'eval.num_samples must be at least 10 (Inception Score uses 10 splits), '
                          f'got {config.eval.num_samples}.')
    if hasattr(family, 'check_config'):
        family.check_config(config)


def _check_training(config: ml_collections.ConfigDict, family: Any) -> None:
    """The optimizer and the training loop's settings (families with `train_step`)."""
    t = config.train
    for key in ('batch_size', 'num_steps', 'log_every', 'checkpoint_every', 'keep_checkpoints'):
        if t[key] <= 0:
            raise ConfigError(f'config key train.{key} must be positive, got {t[key]}.')
    if not 0.0 <= t.ema_rate < 1.0:
        raise ConfigError(f'config key train.ema_rate must be in [0, 1), got {t.ema_rate}.')
    if config.optimizer.learning_rate <= 0:
        raise ConfigError(f'optimizer.learning_rate must be positive, got '
                          f'{config.optimizer.learning_rate}.')
    if t.fid_every < 0:
        raise ConfigError(f'train.fid_every must be >= 0 (0: never), got {t.fid_every}.')
    if t.fid_every and not hasattr(family, 'sample'):
        raise ConfigError(f'train.fid_every needs a family that samples; {config.family!r} does '
                          f'not. Set train.fid_every=0.')
    if t.fid_every and t.fid_num_samples < 10:
        raise ConfigError(f'train.fid_num_samples must be at least 10, got {t.fid_num_samples}.')


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def from_json(text: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(json.loads(text))
