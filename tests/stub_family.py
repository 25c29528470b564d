"""A stub deep family for testing the contract without the VAE: a Gaussian N(w, c I) on pixels,
fitted by two players with two optimizers. Player `a` learns the mean w, player `b` the variance c;
`b` has its own optimizer section (`second_optimizer`, the optimizer schema) and makes `b_steps`
updates per step. Every optional part of the contract is used: eval_params, sample with labels,
PROGRESS_METRICS, RESUMABLE_KEYS and OBJECTIVES.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from genmodels import config as config_lib, data
from genmodels.nn import noise
from genmodels.training import train_state

CONFIG_SCHEMA = {
    'model': {'temperature': float},     # scales the sampling noise; may change on resume
    'loss': {'noise_scale': float, 'b_steps': int},
    'second_optimizer': config_lib.OPTIMIZER_SCHEMA,
}
PROGRESS_METRICS = ('loss_a', 'loss_b')
RESUMABLE_KEYS = ('model.temperature',)


def squared_error(config, w, x):  # [B, D], [D] -> [B]
    return jnp.mean((x - w) ** 2, axis=-1)


OBJECTIVES = {'mse': squared_error}


def _optimizers(config):
    return (train_state.make_optimizer(config.optimizer, config.train.num_steps),
            train_state.make_optimizer(config.second_optimizer,
                                       config.train.num_steps * config.loss.b_steps))


def init(config, rng, example_batch):
    d = int(np.prod(example_batch['image'].shape[1:]))
    tx_a, tx_b = _optimizers(config)
    a = {'w': 0.1 * jax.random.normal(rng, (d,))}
    b = {'log_c': jnp.zeros(())}
    return {'step': jnp.zeros((), jnp.int32), 'a': a, 'b': b, 'opt_a': tx_a.init(a),
            'opt_b': tx_b.init(b)}


def train_step(config, state, batch, rng):
    tx_a, tx_b = _optimizers(config)
    x = batch['image'].reshape(batch['image'].shape[0], -1)
    x = x + config.loss.noise_scale * noise.normal(rng, batch['index'], x.shape[1:])
    objective = config_lib.objective(OBJECTIVES, config.objective)

    def loss_a(a):
        return jnp.mean(objective(config, a['w'], x))

    la, grads = jax.value_and_grad(loss_a)(state['a'])
    a, opt_a = train_state.apply_updates(tx_a, state['a'], state['opt_a'], grads)
    err = jax.lax.stop_gradient(squared_error(config, a['w'], x))

    def loss_b(b):  # Gaussian NLL of the per-pixel squared error: c -> its mean
        return jnp.mean(err / jnp.exp(b['log_c']) + b['log_c'])

    def b_step(carry, _):
        b, opt_b = carry
        lb, g = jax.value_and_grad(loss_b)(b)
        return train_state.apply_updates(tx_b, b, opt_b, g), lb

    (b, opt_b), lbs = jax.lax.scan(b_step, (state['b'], state['opt_b']), None,
                                   length=config.loss.b_steps)
    new = {'step': state['step'] + 1, 'a': a, 'b': b, 'opt_a': opt_a, 'opt_b': opt_b}
    return new, {'loss_a': la, 'loss_b': lbs[-1], 'variance': jnp.exp(b['log_c'])}


def eval_params(config, state):
    return {'w': state['a']['w'], 'log_c': state['b']['log_c']}


def log_likelihood(config, params, batch, rng):
    x = batch['image'].reshape(batch['image'].shape[0], -1)
    d = x.shape[1]
    return (-0.5 * jnp.sum((x - params['w']) ** 2, -1) / jnp.exp(params['log_c'])
            - 0.5 * d * (params['log_c'] + math.log(2 * math.pi)))


def evaluate(config, params, split, rng):
    fn = jax.jit(lambda p, b: log_likelihood(config, p, b, rng))
    log_p = data.map_batches(lambda b: fn(params, b), split, config.eval.batch_size)
    return {'nll_nats': -float(np.mean(log_p)), 'variance': float(jnp.exp(params['log_c']))}


def sample(config, params, rng, num, labels=None):
    shape = data.dataset_info(config.data).shape
    eps = jax.random.normal(rng, (num, params['w'].shape[0]))
    x = params['w'] + config.model.temperature * jnp.exp(0.5 * params['log_c']) * eps
    return jnp.clip(x, *data.value_range(config.data)).reshape((num,) + shape)


def figures(config, params, split, rng, out_dir):
    return []
