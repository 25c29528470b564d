"""The run directory before training starts: is it writable, and does it hold this run?

A workdir that holds a run (its config.json) resumes only with the same config, apart from the
keys that may change on resume (`config.RESUMABLE_KEYS` and the family's own). config.json is
written atomically, and only once every check of the input has passed, so bad input never leaves
a half-written workdir.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections

from genmodels import config as config_lib


class WorkdirError(ValueError):
    """The workdir holds a run with a different config, or cannot be written."""


def flatten(d: dict, prefix: str = '') -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; tuples become lists, as in config.json."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten(v, f'{prefix}{k}.')
        else:
            out[f'{prefix}{k}'] = list(v) if isinstance(v, tuple) else v
    return out


def check(config: ml_collections.ConfigDict, workdir: str, resumable: tuple[str, ...],
          family_keys=None) -> None:
    """Raises WorkdirError if `workdir` cannot be written, or holds a run whose config differs
    beyond the `resumable` keys. `family_keys`: family name -> the keys it added since
    (genmodels.families.added_keys), filled into the saved config as config.read_saved does."""
    try:
        saved = config_lib.read_saved(workdir, family_keys)
    except ValueError as e:
        raise WorkdirError(str(e)) from None
    check_writable(workdir)
    if saved is not None:
        old = flatten(saved)
        new = flatten(json.loads(config_lib.to_json(config)))
        changed = sorted(k for k in set(old) | set(new)
                         if old.get(k) != new.get(k) and k not in resumable)
        if changed:
            raise WorkdirError(
                f'{workdir} holds a run with a different config ({", ".join(changed[:5])}); '
                f'use a new --workdir, or the same config to resume.')


def check_writable(workdir: str) -> None:
    """Raises WorkdirError unless `workdir` is, or can be made as, a writable directory."""
    existing = os.path.abspath(workdir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise WorkdirError(f'--workdir {workdir} lies under {existing}, which is a file; give a '
                           f'path under a directory.')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirError(f'--workdir {workdir}: {existing} is not writable; give a path you '
                           f'can write to.')


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """workdir/config.json, written atomically (by the first process only)."""
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        write_json(os.path.join(workdir, 'config.json'), config_lib.to_json(config))


def write_json(path: str, record: dict[str, Any] | str) -> None:
    """`record` (a dict, or JSON text) to `path` atomically: a reader sees the old or the new."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        if isinstance(record, str):
            f.write(record)
        else:
            json.dump(record, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
