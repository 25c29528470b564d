"""Deterministic autoencoder: the classic 784-512-256-128-256-512-784 MLP (Hinton & Salakhutdinov 2006).

ReLU hidden layers, sigmoid output, mean squared error. It has no prior over codes, so it offers
reconstructions and code-space interpolation but no samples or likelihood.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genmodels import config as config_lib, data as data_lib, viz
from genmodels.config import ConfigError
from genmodels.nn import nets
from genmodels.training import train_state

CONFIG_SCHEMA = {
    'model': {
        'hidden': tuple,  # encoder widths, the last is the code size; the decoder mirrors them
    },
    'loss': {},
}


def check_config(config) -> None:
    if len(config.model.hidden) < 1:
        raise ConfigError('model.hidden must list at least the code size.')
    if config.data.binarize or config.data.dequantize or config.data.scale != '01':
        raise ConfigError("the autoencoder's sigmoid output needs data.scale='01' without "
                          'binarisation or dequantisation.')


def _networks(config, dims: int):
    hidden = tuple(config.model.hidden)
    return nets.MLP(hidden), nets.MLP(hidden[-2::-1] + (dims,))


def encode(config, params, x: jax.Array) -> jax.Array:  # [B, H, W, C] -> [B, code]
    encoder, _ = _networks(config, int(np.prod(x.shape[1:])))
    return encoder.apply({'params': params['encoder']}, x.reshape(x.shape[0], -1))


def decode(config, params, code: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    _, decoder = _networks(config, int(np.prod(shape)))
    out = decoder.apply({'params': params['decoder']}, code)
    return jax.nn.sigmoid(out).reshape((code.shape[0],) + tuple(shape))


def per_example_mse(config, params, x: jax.Array) -> jax.Array:  # [B]
    recon = decode(config, params, encode(config, params, x), x.shape[1:])
    return jnp.mean((recon - x) ** 2, axis=tuple(range(1, x.ndim)))


OBJECTIVES = {'mse': per_example_mse}


def init(config, rng: jax.Array, example_batch) -> dict:
    x = jnp.asarray(example_batch['image'][:1]).reshape(1, -1)
    encoder, decoder = _networks(config, x.shape[-1])
    k_enc, k_dec = jax.random.split(rng)
    params = {
        'encoder': encoder.init(k_enc, x)['params'],
        'decoder': decoder.init(k_dec, jnp.zeros((1, config.model.hidden[-1])))['params'],
    }
    return train_state.create(config, params)


def train_step(config, state, batch, rng):
    def loss_fn(params, batch):
        objective = config_lib.objective(OBJECTIVES, config.objective)
        return jnp.mean(objective(config, params, batch['image'])), ({}, {}, None)

    (loss, _), grads = train_state.value_and_grad(config, loss_fn, state['params'], batch)
    new_state, grad_norm = train_state.apply_gradients(config, state, grads)
    return new_state, {'loss': loss, 'mse': loss, 'grad_norm': grad_norm}


def evaluate(config, params, data, rng) -> dict[str, float]:
    """Test reconstruction error: mean squared error per pixel, on the [0, 1] scale."""
    fn = jax.jit(lambda p, x: per_example_mse(config, p, x))
    errors = data_lib.map_batches(lambda b: fn(params, b['image']), data, config.eval.batch_size)
    return {'recon_mse': float(np.mean(errors))}


def figures(config, params, data, rng, out_dir: str) -> list[str]:
    x = jnp.asarray(data['image'][:16])
    code = encode(config, params, x)
    recons = decode(config, params, code, x.shape[1:])
    path = viz.lerp(code[0], code[1], 10)
    interp = decode(config, params, path, x.shape[1:])
    return [
        viz.save_rows([np.asarray(x), np.asarray(recons)], f'{out_dir}/reconstructions.png',
                      ['data', 'reconstruction']),
        viz.save_rows([np.asarray(interp)], f'{out_dir}/interpolation.png', ['linear (code space)']),
    ]
