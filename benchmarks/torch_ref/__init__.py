"""PyTorch eager references of the deep families, for timing beside JAX in the same run.

Each module mirrors one architecture and its train step, layer for layer, and checks itself against
flax on the same weights: `vae` (the MLP VAE), `dcgan` (gan.py's DCGAN), `mlp_gan` (gan.py's MLP
GAN), `ddpm` (the DDPM U-Net), `flow_matching` (the same U-Net on the flow-matching loss).
Each exports `unmirrored(config) -> [config keys it does not implement]` and
`make(config, state, host_batches) -> (step(i), mirror check summary)`.

torch is a benchmark-only dependency (benchmarks/requirements-torch.txt, pinned): genmodels, the
tests, train.py and eval.py never import it, and this package imports it only when a reference is
built, so `python -m benchmarks.run` runs, without the torch columns, where it is missing.
"""

from __future__ import annotations

import importlib
import importlib.util

INSTALL = 'pip install -r benchmarks/requirements-torch.txt'

# family -> the module mirroring its default architecture
MODULES = {'vae': 'benchmarks.torch_ref.vae', 'gan': 'benchmarks.torch_ref.dcgan',
           'ddpm': 'benchmarks.torch_ref.ddpm',
           'flow_matching': 'benchmarks.torch_ref.flow_matching'}
# (family, model.architecture) -> the module mirroring that other architecture
ARCHITECTURES = {('gan', 'mlp'): 'benchmarks.torch_ref.mlp_gan'}


def available() -> bool:
    return importlib.util.find_spec('torch') is not None


def why_not(config) -> str | None:
    """None when a torch reference mirrors `config`, else the reason (for the results' notes)."""
    if not available():
        return f'torch is not installed ({INSTALL})'
    if config.family not in MODULES:
        return f'no torch reference for the {config.family} family'
    t = config.train
    shared = {'train.num_seeds': t.num_seeds != 1,
              'train.grad_accum_steps': t.grad_accum_steps != 1,
              'train.compute_dtype': t.compute_dtype != 'float32'}
    bad = [k for k, v in shared.items() if v] + _module(config).unmirrored(config)
    if bad:
        return f'the torch reference does not implement {", ".join(bad)} of this config'
    return None


def make(config, state, host_batches):
    """(step(i), mirror check summary) of the torch reference of `config` (see `why_not`)."""
    return _module(config).make(config, state, host_batches)


def _module(config):
    architecture = config.model.get('architecture') if 'model' in config else None
    return importlib.import_module(ARCHITECTURES.get((config.family, architecture),
                                                     MODULES[config.family]))
