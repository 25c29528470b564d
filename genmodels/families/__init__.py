"""Family registry: config.family -> module exporting the family contract (see DESIGN.md).

Deep families export `init`, `train_step`, `evaluate`, `figures` and optionally `sample` and
`log_likelihood`; classical families export `fit(config, data, rng) -> (params, metrics)` instead of
`init`/`train_step` (see `is_fit`; their shared part is `density.py`). Every family exports
`CONFIG_SCHEMA` (its `model` and `loss` config sections; fit families have no `loss`) and, where it
has a choice of losses or fitting rules, an `OBJECTIVES` registry.
"""

import importlib
from types import ModuleType

_MODULES = {
    'autoencoder': 'genmodels.families.autoencoder',
    'classifier': 'genmodels.families.classifier',
    'gaussian': 'genmodels.families.gaussian_mle',
    'gmm': 'genmodels.families.gmm',
    'kde': 'genmodels.families.kde',
    'vae': 'genmodels.families.vae',
}


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> ModuleType:
    if name not in _MODULES:
        raise ValueError(f'unknown family {name!r}; known families: {", ".join(names())}.')
    return importlib.import_module(_MODULES[name])


def is_fit(family: ModuleType) -> bool:
    """A classical family: fitted once by `fit` (closed form or EM), not trained step by step."""
    return hasattr(family, 'fit') and not hasattr(family, 'train_step')
