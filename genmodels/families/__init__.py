"""Family registry: config.family -> module exporting the family contract (see DESIGN.md).

Deep families export `init`, `train_step`, `evaluate`, `figures` and optionally `sample` and
`log_likelihood`; classical families export `fit` instead of `init`/`train_step`. Every family
exports `CONFIG_SCHEMA` (its `model` and `loss` config sections) and, where it has a choice of
losses, an `OBJECTIVES` registry.
"""

import importlib
from types import ModuleType

_MODULES = {
    'autoencoder': 'genmodels.families.autoencoder',
    'classifier': 'genmodels.families.classifier',
    'vae': 'genmodels.families.vae',
}


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> ModuleType:
    if name not in _MODULES:
        raise ValueError(f'unknown family {name!r}; known families: {", ".join(names())}.')
    return importlib.import_module(_MODULES[name])
