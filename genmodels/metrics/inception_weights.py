"""Weights for the flax InceptionV3: pytorch-fid's state_dict -> flax variables, checked by sha256.

Nothing is downloaded: the user passes the path of pytorch-fid's weights file
(https://github.com/mseitzer/pytorch-fid/releases, fid_weights/pt_inception-2015-12-05-6726825d.pth),
which is read without torch (torch_pickle.py) and must match PT_INCEPTION_SHA256.
"""
import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from genmodels.metrics.inception import INPUT_SIZE, InceptionV3
from genmodels.metrics.torch_pickle import load_torch_file

PT_INCEPTION_FILE = 'pt_inception-2015-12-05-6726825d.pth'
PT_INCEPTION_SHA256 = '6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2'
EXTRACTOR_NAME = 'pytorch_fid_inception_v3_pool3'  # the `extractor` field of FID reference stats

# torch leaf name -> (flax collection, flax leaf name); BatchNorm's weight is flax's scale.
_LEAVES = {'weight': ('params', 'kernel'), 'bias': ('params', 'bias'),
           'running_mean': ('batch_stats', 'mean'), 'running_var': ('batch_stats', 'var')}


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def variables_template() -> dict:
    """{'params': ..., 'batch_stats': ...} of jax.ShapeDtypeStruct; traced, not run."""
    x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    return jax.eval_shape(InceptionV3().init, jax.random.key(0), x)


def _torch_to_flax(name: str, value: np.ndarray) -> tuple[tuple, np.ndarray]:
    *modules, leaf = name.split('.')
    if leaf not in _LEAVES or not modules:
        raise ValueError(f'state_dict entry {name!r} is not a conv, BatchNorm or fc tensor')
    collection, flax_leaf = _LEAVES[leaf]
    if modules[-1] == 'bn' and leaf == 'weight':
        flax_leaf = 'scale'
    if value.ndim == 4:    # conv [out, in, kh, kw] -> [kh, kw, in, out]
        value = value.transpose(2, 3, 1, 0)
    elif value.ndim == 2:  # fc [out, in] -> [in, out]
        value = value.T
    return (collection, *modules, flax_leaf), value


def state_dict_to_variables(state_dict) -> dict:
    """pytorch-fid FID-Inception state_dict (torch name -> array) -> flax variables of InceptionV3.

    Every tensor must land on a flax variable of the same shape and every flax variable must be
    filled; only BatchNorm's num_batches_tracked (a training counter) is dropped.
    """
    template = traverse_util.flatten_dict(variables_template())
    out = {}
    for name, value in state_dict.items():
        if name.endswith('.num_batches_tracked'):
            continue
        key, array = _torch_to_flax(name, np.asarray(value))
        if key not in template:
            raise ValueError(f'state_dict entry {name!r} has no place in the flax InceptionV3 '
                             f'(looked for {"/".join(key)}); is this pytorch-fid\'s FID Inception?')
        if array.shape != template[key].shape:
            raise ValueError(f'state_dict entry {name!r} has shape {array.shape} after conversion, '
                             f'the flax InceptionV3 expects {template[key].shape}')
        out[key] = jnp.asarray(array, jnp.float32)
    missing = sorted('/'.join(k) for k in template.keys() - out.keys())
    if missing:
        raise ValueError(f'state_dict lacks {len(missing)} of the {len(template)} tensors InceptionV3 '
                         f'needs, e.g. {missing[:3]}; is this pytorch-fid\'s FID Inception?')
    return traverse_util.unflatten_dict(out)


def load_inception_variables(path, sha256: str | None = PT_INCEPTION_SHA256) -> dict:
    """Flax variables from pytorch-fid's weights file at `path`; sha256=None skips the check
    (for state_dicts exported from other, e.g. randomly initialised, pytorch-fid models)."""
    if sha256 is not None:
        digest = file_sha256(path)
        if digest != sha256:
            raise ValueError(f'{path} has sha256 {digest}, expected {sha256} ({PT_INCEPTION_FILE} '
                             'from pytorch-fid\'s fid_weights release); pass that file')
    return state_dict_to_variables(load_torch_file(path))


def random_variables(seed: int = 0) -> dict:
    """Random InceptionV3 variables for tests: He-normal kernels, identity BatchNorm."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == 'kernel':
            fan_in = int(np.prod(leaf.shape[:-1]))
            return jnp.asarray(rng.normal(0, np.sqrt(2 / fan_in), leaf.shape), jnp.float32)
        return jnp.full(leaf.shape, 1.0 if name in ('scale', 'var') else 0.0, jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, variables_template())
