"""Config validation: every key known, every value of the right type, before any work starts.

A config is an `ml_collections.ConfigDict` built by a file in `configs/`. The shared sections are
described by `SCHEMA` below; each family adds the schema of its own sections (`FAMILY.CONFIG_SCHEMA`:
`model`, `loss`, and any it adds, e.g. a GAN's `disc_optimizer`). Every section whose schema is
`OPTIMIZER_SCHEMA` is checked as an optimizer. A fit family (closed form or EM) has no optimizer and
no training loop, so its config has no `optimizer` section and a `train` section of
`FIT_TRAIN_SCHEMA` only: a config holds only what is read. Defaults live in the config files, never
here.

`config.objective` names an entry of the family's `OBJECTIVES` registry, or a function by import
path, `module.name:function` or `path/to/file.py:function` (see `objective`), resolved and checked
here when the config is validated.

This module imports nothing of genmodels: `validate` is given the family module.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
from typing import Any, Callable, Mapping

import ml_collections

NoneType = type(None)

# The schema of an optimizer section: `optimizer`, and any section a family adds with this very
# dict as its schema (a second player's optimizer), is validated as one.
OPTIMIZER_SCHEMA: dict[str, Any] = {
    'name': str,
    'learning_rate': float,
    'b1': float,
    'b2': float,
    'weight_decay': float,
    'grad_clip_norm': float,
    'schedule': str,
    'warmup_steps': int,
}
OPTIMIZER_NAMES = ('adam', 'adamw')
SCHEDULES = ('constant', 'cosine')

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
        'seed': int,
        'eval_seed': int,
        'sequence_length': int,
        'image_size': int,
        'image_channels': int,
    },
    'optimizer': OPTIMIZER_SCHEMA,
    'train': {
        'batch_size': int,
        'num_steps': int,
        'num_seeds': int,
        'grad_accum_steps': int,
        'compute_dtype': str,
        'param_sharding': str,
        'remat': str,
        'log_every': int,
        'checkpoint_every': int,
        'keep_checkpoints': int,
        'init_from': str,
        'ema_rate': float,
        'figures': bool,
        'figures_every': int,
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


# Keys that may change when a run is resumed or evaluated again: extending a run or changing how
# often it reports. A family adds its own (its RESUMABLE_KEYS), e.g. a sampler's settings.
# How the state is laid out over the devices and whether blocks are recomputed change no value
# beyond float rounding, so a run may resume on another layout (and another device count).
RESUMABLE_KEYS = ('train.num_steps', 'train.log_every', 'train.checkpoint_every', 'train.figures',
                  'train.figures_every', 'train.fid_every', 'train.fid_num_samples',
                  'train.param_sharding', 'train.remat',
                  'eval.batch_size', 'eval.max_examples', 'eval.num_samples', 'eval.iwae_k')
PARAM_SHARDINGS = ('replicated', 'fsdp')
REMATS = ('none', 'blocks')

# The `train` section of a fit family: `fit` runs once on the whole train split.
FIT_TRAIN_SCHEMA: dict[str, Any] = {
    'figures': bool,
}


class ConfigError(ValueError):
    """A config key is unknown or missing, or a value has the wrong type."""


def check_choice(config: ml_collections.ConfigDict, key: str, choices) -> None:
    """Raises ConfigError unless config's `key` ('section.name') is one of `choices`."""
    section, name = key.split('.')
    value = config[section][name]
    if value not in choices:
        raise ConfigError(f'{key} must be one of {tuple(choices)}, got {value!r}.')


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


def is_fit(family: Any) -> bool:
    """A classical family: fitted once by `fit` (closed form or EM), not trained step by step."""
    return hasattr(family, 'fit') and not hasattr(family, 'train_step')


def full_schema(family: Any) -> dict[str, Any]:
    """The shared sections (fit families: without the training loop's) plus the family's own."""
    shared = dict(SCHEMA)
    if is_fit(family):
        del shared['optimizer']
        shared['train'] = FIT_TRAIN_SCHEMA
    for section, schema in family.CONFIG_SCHEMA.items():  # a shared section gains the family's keys
        extends = (isinstance(shared.get(section), dict) and isinstance(schema, dict)
                   and schema is not OPTIMIZER_SCHEMA)
        shared[section] = {**shared[section], **schema} if extends else schema
    return shared


def validate(config: ml_collections.ConfigDict, family: Any, resolve_objective: bool = True
             ) -> None:
    """Raises ConfigError naming the first bad key; checks the shared sections and those of
    `family` (the module that config.family names; `genmodels.families.validated` finds it).
    With resolve_objective=False an objective given by import path is not imported (evaluating a
    workdir must not run code its config names)."""
    _check(config, full_schema(family), '')
    _check_values(config, family, resolve_objective)


def _check_values(config: ml_collections.ConfigDict, family: Any, resolve_objective: bool
                  ) -> None:
    if resolve_objective:
        _check_objective(config, family)
    if is_fit(family):
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
    """The optimizers and the training loop's settings (families with `train_step`)."""
    t = config.train
    for key in ('batch_size', 'num_steps', 'num_seeds', 'grad_accum_steps', 'log_every',
                'checkpoint_every', 'keep_checkpoints'):
        if t[key] <= 0:
            raise ConfigError(f'config key train.{key} must be positive, got {t[key]}.')
    if not 0.0 <= t.ema_rate < 1.0:
        raise ConfigError(f'config key train.ema_rate must be in [0, 1), got {t.ema_rate}.')
    check_choice(config, 'train.compute_dtype', ('float32', 'bfloat16'))
    check_choice(config, 'train.param_sharding', PARAM_SHARDINGS)
    check_choice(config, 'train.remat', REMATS)
    if t.remat != 'none' and not getattr(family, 'REMAT_BLOCKS', ()):
        raise ConfigError(f'train.remat={t.remat!r}: the {config.family} family has no blocks to '
                          f'rematerialise (families with them list REMAT_BLOCKS); set '
                          f'train.remat=none.')
    for section, schema in full_schema(family).items():
        if schema is OPTIMIZER_SCHEMA:
            _check_optimizer(config[section], section)
    for key in ('fid_every', 'figures_every'):
        if t[key] < 0:
            raise ConfigError(f'train.{key} must be >= 0 (0: never), got {t[key]}.')
        if t[key] and not hasattr(family, 'sample'):
            raise ConfigError(f'train.{key} needs a family that samples; {config.family!r} does '
                              f'not. Set train.{key}=0.')
    if t.fid_every and t.fid_num_samples < 10:
        raise ConfigError(f'train.fid_num_samples must be at least 10, got {t.fid_num_samples}.')


def _check_optimizer(opt: ml_collections.ConfigDict, section: str) -> None:
    for key, choices in (('name', OPTIMIZER_NAMES), ('schedule', SCHEDULES)):
        if opt[key] not in choices:
            raise ConfigError(f'{section}.{key} must be one of {choices}, got {opt[key]!r}.')
    if opt.learning_rate <= 0:
        raise ConfigError(f'{section}.learning_rate must be positive, got {opt.learning_rate}.')
    if not (0.0 <= opt.b1 < 1.0 and 0.0 <= opt.b2 < 1.0):
        raise ConfigError(f'{section}.b1 and {section}.b2 must be in [0, 1), got {opt.b1} and '
                          f'{opt.b2}.')
    if min(opt.weight_decay, opt.grad_clip_norm, opt.warmup_steps) < 0:
        raise ConfigError(f'{section}.weight_decay, grad_clip_norm and warmup_steps must be >= 0.')


# ------------------------------------------------------------------------------------------------
# Objectives: a registry entry, or a function by import path

def objective(registry: Mapping[str, Callable], name: str) -> Callable:
    """The objective `name`: `registry[name]`, else the function at the import path `name`:
    `package.module:function` (imported from sys.path; train.py puts the repository root there)
    or `path/to/file.py:function` (relative to the working directory, or absolute)."""
    if name in registry:
        return registry[name]
    if ':' not in name:
        raise ConfigError(
            f'unknown objective {name!r}; known: {", ".join(sorted(registry))}, or a function by '
            f'import path (package.module:function or path/to/file.py:function).')
    return _load_function(name)


@functools.cache
def _load_function(spec: str) -> Callable:
    where, _, attr = spec.rpartition(':')
    try:
        if where.endswith('.py'):
            path = os.path.abspath(where)
            if not os.path.isfile(path):
                raise ConfigError(f'objective {spec!r}: no file {path}; give a path relative to the '
                                  'working directory, or an absolute one.')
            # A private module name per file, so two files with the same name do not collide.
            name = f'_genmodels_objective_{hashlib.sha256(path.encode()).hexdigest()[:16]}'
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a user's module can raise anything; report it.
        first = (str(e).strip().splitlines() or [''])[0]
        raise ConfigError(f'objective {spec!r}: importing {where} failed with '
                          f'{type(e).__name__}: {first}; put its package on PYTHONPATH or give a '
                          f'file path (path/to/file.py:{attr}).') from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f'objective {spec!r}: {where} has no function {attr!r}.')
    return fn


def _check_objective(config: ml_collections.ConfigDict, family: Any) -> None:
    """A built-in objective is known; one given by import path exists and takes the same
    parameters as the family's built-in objectives."""
    registry = getattr(family, 'OBJECTIVES', {})
    name = config.objective
    if not registry or name in registry:
        return
    if ':' not in name:
        raise ConfigError(
            f'unknown objective {name!r} for family {config.family!r}; known: '
            f'{", ".join(sorted(registry))}, or a function by import path '
            '(package.module:function or path/to/file.py:function).')
    fn = _load_function(name)
    wanted = list(inspect.signature(next(iter(registry.values()))).parameters)
    try:
        inspect.signature(fn).bind(*wanted)
    except (TypeError, ValueError):
        raise ConfigError(
            f'objective {name!r} takes {inspect.signature(fn)}, but a {config.family} objective '
            f'is called as ({", ".join(wanted)}); see the built-in ones in '
            f'{family.__name__}.') from None


def objective_source(registry: Mapping[str, Callable], name: str) -> str | None:
    """The sha256 of the source file of an objective given by import path (None for a built-in
    one): a resumed run checks it, so that it never trains on with other code of the same name."""
    if name in registry or ':' not in name:
        return None
    path = inspect.getsourcefile(_load_function(name))
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def from_json(text: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(json.loads(text))


# Keys added to the trainer's sections after runs were saved without them, with the value that
# reproduces those runs: read_saved fills them in, so older workdirs resume and evaluate. Each is
# added where its section holds the marker key (a fit family's `train` has no `num_steps`, and
# gets none of the loop's keys). The keys a family added sit in its own ADDED_KEYS
# (genmodels.families), passed to read_saved as `family_keys`.
ADDED_KEYS = {
    ('train', 'grad_accum_steps'): ('num_steps', 1),
    ('train', 'compute_dtype'): ('num_steps', 'float32'),
    ('train', 'param_sharding'): ('num_steps', 'replicated'),
    ('train', 'remat'): ('num_steps', 'none'),
    ('train', 'init_from'): ('num_steps', ''),
    ('data', 'sequence_length'): ('name', 0),
    ('data', 'image_size'): ('name', 0),
    ('data', 'image_channels'): ('name', 0),
}


def read_saved(workdir: str, family_keys: Callable[[str], Mapping[str, Any]] | None = None
               ) -> dict | None:
    """The run config saved in `workdir`/config.json as a dict, keys added since filled in: the
    trainer's from ADDED_KEYS, and `family_keys(saved family)` ('section.key' -> value, e.g.
    `genmodels.families.added_keys`); None if there is none. Raises ValueError (one line) for a
    workdir that is a file or a config.json that is not JSON."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f'--workdir {workdir} is a file; give a directory (new or a run\'s).')
    path = os.path.join(workdir, 'config.json')
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            saved = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f'{path} is not readable JSON ({e}); use a new --workdir, or restore '
                         f'that file.') from None
    for (section, key), (marker, value) in ADDED_KEYS.items():
        if isinstance(saved.get(section), dict) and marker in saved[section]:
            saved[section].setdefault(key, value)
    if family_keys is not None and isinstance(saved.get('family'), str):
        for name, value in family_keys(saved['family']).items():
            section, key = name.split('.')
            if isinstance(saved.setdefault(section, {}), dict):
                saved[section].setdefault(key, value)
    return saved
