"""Autoregressive transformer over image pixels as tokens (a decoder-only "GPT": Radford et al.
2018, 2019; causal self-attention as in Vaswani et al. 2017, pre-LayerNorm as in GPT-2).

    log p(x | c) = sum_{i=1}^{D} log p(x_i | x_<i, c),   x_i in {0, ..., V - 1}   (chain rule)
    perplexity   = exp(-(1 / D) log p(x))                                   (per token)

The pixels of an image, in raster order, are D tokens over V levels: binarised MNIST is 784 binary
tokens, the raw 8x8 `digits` 64 tokens of 17 levels. The input sequence is [c, x_1, ..., x_{D-1}]
with c a leading context token (the class of a class-conditional model, else one start token), and
position i's output is the distribution of x_{i+1}, so one pass gives every conditional and the
likelihood is exact. A class-conditional model's log p(x) marginalises the class under a uniform
prior, log p(x) = logsumexp_y log p(x | y) - log K; `nll_given_label_nats` is -log p(x | y) for the
true label.

Sampling draws one token per step inside one `lax.scan`, each attention layer keeping the keys and
values of the tokens drawn so far (a key-value cache), so a step costs O(D) instead of the O(D^2)
of recomputing the prefix; `sampler.temperature` divides the logits. The same scan completes
images from a given prefix (the top half of a test image).
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmodels import config as config_lib, data as data_lib, metrics, viz
from genmodels.config import ConfigError
from genmodels.metrics import labels as labels_lib
from genmodels.training import train_state

PyTree = Any
Batch = dict[str, jax.Array]
Cache = tuple[tuple[jax.Array, jax.Array], ...]  # per layer: keys, values [B, D, heads, head_dim]

CONFIG_SCHEMA = {
    'model': {
        'num_layers': int,
        'num_heads': int,
        'embed_dim': int,       # divisible by num_heads
        'mlp_dim': int,         # hidden width of each block's MLP
        'conditional': bool,    # a leading class token instead of a start token
    },
    'sampler': {
        'temperature': float,   # logits / temperature; 1: the model's distribution
    },
    'eval': {                   # added to the shared eval section
        'timing_samples': int,  # images sampled with and without the cache to time both (0: no)
    },
}

# Sampler settings may change on an existing workdir: eval.py --set sampler.temperature=0.8
# train.remat='blocks' recomputes these in the backward pass.
REMAT_BLOCKS = ('transformer blocks',)
RESUMABLE_KEYS = tuple(f'sampler.{k}' for k in CONFIG_SCHEMA['sampler']) + ('eval.timing_samples',)


def check_config(config: ml_collections.ConfigDict) -> None:
    m = config.model
    if min(m.num_layers, m.num_heads, m.embed_dim, m.mlp_dim) < 1:
        raise ConfigError('model.num_layers, num_heads, embed_dim and mlp_dim must be positive.')
    if m.embed_dim % m.num_heads:
        raise ConfigError(f'model.embed_dim={m.embed_dim} must be divisible by model.num_heads='
                          f'{m.num_heads}.')
    if config.data.dequantize or data_lib.is_toy(config.data.name):
        raise ConfigError('the autoregressive model needs discrete pixels as tokens: use an image '
                          'dataset with data.dequantize=False (binarised or raw levels).')
    if not config.sampler.temperature > 0:
        raise ConfigError(f'sampler.temperature must be positive, got '
                          f'{config.sampler.temperature}.')
    if config.eval.timing_samples < 0:
        raise ConfigError(f'eval.timing_samples must be >= 0, got {config.eval.timing_samples}.')


# ------------------------------------------------------------------------------------------------
# The transformer

class CausalSelfAttention(nn.Module):
    """Multi-head attention of each position over itself and the positions before it.

    Without a cache: x [B, T, E] at positions 0..T-1. With a cache (keys and values [B, L, H, E/H]
    of positions < pos): x [B, 1, E] at position `pos`; returns the cache with pos filled in.
    """
    num_heads: int

    @nn.compact
    def __call__(self, x: jax.Array, cache: tuple[jax.Array, jax.Array] | None = None,
                 pos: jax.Array | None = None):
        b, t, e = x.shape
        h = self.num_heads
        q, k, v = jnp.split(nn.Dense(3 * e, name='qkv')(x).reshape(b, t, 3 * h, e // h), 3, axis=2)
        if cache is None:
            mask = jnp.tril(jnp.ones((t, t), bool))                          # [T, S]
        else:
            k = jax.lax.dynamic_update_slice(cache[0], k.astype(cache[0].dtype), (0, pos, 0, 0))
            v = jax.lax.dynamic_update_slice(cache[1], v.astype(cache[1].dtype), (0, pos, 0, 0))
            cache = (k, v)
            mask = (jnp.arange(k.shape[1]) <= pos)[None, :]                 # [1, S]
        logits = jnp.einsum('bthd,bshd->bhts', q, k) / math.sqrt(e // h)     # [B, H, T, S]
        weights = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)
        y = jnp.einsum('bhts,bshd->bthd', weights, v).reshape(b, t, e)
        return nn.Dense(e, name='out')(y), cache


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""
    num_heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x: jax.Array, cache=None, pos=None):
        y, cache = CausalSelfAttention(self.num_heads, name='attn')(nn.LayerNorm(name='ln_1')(x),
                                                                    cache, pos)
        x = x + y
        y = nn.Dense(self.mlp_dim, name='mlp_in')(nn.LayerNorm(name='ln_2')(x))
        return x + nn.Dense(x.shape[-1], name='mlp_out')(nn.gelu(y)), cache


class Transformer(nn.Module):
    """Token ids [B, T] (pixel levels 0..V-1, context tokens V..V+C-1) -> logits [B, T, V] over
    the next pixel; with a cache, one token at position `pos` (see CausalSelfAttention)."""
    num_levels: int     # V
    num_contexts: int   # C: classes, or 1 (a start token)
    length: int         # D: positions, learned embeddings
    num_layers: int
    num_heads: int
    embed_dim: int
    mlp_dim: int
    remat: bool = False  # training: recompute each block's activations in the backward pass

    @nn.compact
    def __call__(self, ids: jax.Array, cache: Cache | None = None, pos: jax.Array | None = None):
        e = self.embed_dim
        x = nn.Embed(self.num_levels + self.num_contexts, e, name='token_embed')(ids)
        positions = self.param('pos_embed', nn.initializers.normal(0.02), (self.length, e))
        if cache is None:
            x = x + positions[:ids.shape[1]]
        else:
            x = x + jax.lax.dynamic_slice_in_dim(positions, pos, 1)
        new_cache = []
        block = nn.remat(Block) if self.remat and cache is None else Block  # names kept
        for i in range(self.num_layers):
            x, layer_cache = block(self.num_heads, self.mlp_dim, name=f'block_{i}')(
                x, None if cache is None else cache[i], pos)
            new_cache.append(layer_cache)
        logits = nn.Dense(self.num_levels, name='head')(nn.LayerNorm(name='ln_f')(x))
        return logits, (None if cache is None else tuple(new_cache))


def network(config, num_levels: int, num_contexts: int, length: int) -> Transformer:
    m = config.model
    return Transformer(num_levels, num_contexts, length, m.num_layers, m.num_heads, m.embed_dim,
                       m.mlp_dim, remat=config.train.remat == 'blocks')


def sizes(params: PyTree) -> tuple[int, int, int]:
    """(V levels, C context tokens, D positions), read off the parameters' shapes."""
    levels = params['head']['bias'].shape[0]
    contexts = params['token_embed']['embedding'].shape[0] - levels
    return levels, contexts, params['pos_embed'].shape[0]


def _apply(config, params, ids, cache=None, pos=None):
    return network(config, *sizes(params)).apply({'params': params}, ids, cache, pos)


# ------------------------------------------------------------------------------------------------
# Tokens

def num_levels(config) -> int:
    """V: 2 for binarised data, else the raw levels (17 for digits, 256 for 8-bit images)."""
    return 2 if config.data.binarize else data_lib.dataset_info(config.data).max_value + 1


def to_tokens(config, images: jax.Array, levels: int) -> jax.Array:
    """Images in the data's value range [B, H, W, C] -> int32 tokens [B, D] in raster order."""
    u = data_lib.to_unit(config.data, images.reshape(images.shape[0], -1))
    return jnp.clip(jnp.round(u * (levels - 1)), 0, levels - 1).astype(jnp.int32)


def to_images(config, tokens: jax.Array, levels: int, shape) -> jax.Array:
    """Tokens [B, D] -> images [B, H, W, C] in the data's value range."""
    u = tokens.astype(jnp.float32) / (levels - 1)
    return data_lib.from_unit(config.data, u).reshape((tokens.shape[0],) + tuple(shape))


def context_ids(config, params, labels: jax.Array | None, num: int) -> jax.Array:
    """The leading token [num]: V + label for a conditional model, else the start token V."""
    levels, _, _ = sizes(params)
    if not config.model.conditional:
        return jnp.full((num,), levels, jnp.int32)
    return levels + labels.astype(jnp.int32)


def token_log_probs(config, params, tokens: jax.Array, context: jax.Array) -> jax.Array:
    """log p(x_i | x_<i, c) for every token: tokens [B, D], context ids [B] -> [B, D], nats."""
    ids = jnp.concatenate([context[:, None], tokens[:, :-1]], axis=1)
    logits, _ = _apply(config, params, ids)
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(log_p, tokens[..., None], axis=-1)[..., 0]


# ------------------------------------------------------------------------------------------------
# The objective: exact negative log-likelihood

@chex.dataclass
class Terms:
    loss: chex.Array  # [B] what the optimiser minimises: NLL per token, nats
    nll: chex.Array   # [B] -log p(x | c), nats per example


def nll_objective(config, params, batch: Batch, rng: jax.Array) -> Terms:
    levels, _, _ = sizes(params)
    tokens = to_tokens(config, batch['image'], levels)
    context = context_ids(config, params, batch['label'], tokens.shape[0])
    nll = -jnp.sum(token_log_probs(config, params, tokens, context), axis=-1)
    return Terms(loss=nll / tokens.shape[1], nll=nll)


OBJECTIVES: dict[str, Callable[..., Terms]] = {'nll': nll_objective}


# ------------------------------------------------------------------------------------------------
# Sampling

def _draw(config, rng: jax.Array, i: jax.Array, logits: jax.Array) -> jax.Array:
    """Token i of every row from logits [B, V] at sampler.temperature; the key depends on i only,
    so the cached and the recomputing sampler draw the same tokens."""
    return jax.random.categorical(jax.random.fold_in(rng, i),
                                  logits.astype(jnp.float32) / config.sampler.temperature)


def sample_tokens(config, params, rng: jax.Array, context: jax.Array,
                  prefix: jax.Array | None = None, num_given: int = 0, cache: bool = True
                  ) -> jax.Array:
    """Tokens [B, D] drawn one at a time in one lax.scan; the first `num_given` are copied from
    `prefix` [B, D] (completion). cache=False recomputes the whole prefix at every step (the
    reference the cache is checked and timed against)."""
    _, _, length = sizes(params)
    b = context.shape[0]
    prefix = jnp.zeros((b, length), jnp.int32) if prefix is None else prefix.astype(jnp.int32)

    def choose(i, logits):
        return jnp.where(i < num_given, prefix[:, i], _draw(config, rng, i, logits))

    if cache:
        m = config.model
        head_dim = m.embed_dim // m.num_heads
        zeros = jnp.zeros((b, length, m.num_heads, head_dim), jnp.float32)
        kv = tuple((zeros, zeros) for _ in range(m.num_layers))

        def step(carry, i):
            kv, token_in = carry
            logits, kv = _apply(config, params, token_in[:, None], kv, i)
            token = choose(i, logits[:, 0])
            return (kv, token), token

        _, tokens = jax.lax.scan(step, (kv, context), jnp.arange(length))
        return tokens.T

    def step(tokens, i):
        ids = jnp.concatenate([context[:, None], tokens[:, :-1]], axis=1)
        logits, _ = _apply(config, params, ids)
        return tokens.at[:, i].set(choose(i, logits[:, i])), None

    tokens, _ = jax.lax.scan(step, jnp.zeros((b, length), jnp.int32), jnp.arange(length))
    return tokens


def _labels(config, params, num: int, labels) -> jax.Array | None:
    if not config.model.conditional:
        return None
    _, classes, _ = sizes(params)
    return labels_lib.balanced(num, classes) if labels is None else jnp.asarray(labels)


def sample(config, params, rng: jax.Array, num: int, labels=None, *, cache: bool = True
           ) -> jax.Array:
    """[num, H, W, C] in the data's value range; class-balanced labels (i mod K) when a
    conditional model gets none."""
    levels, _, _ = sizes(params)
    context = context_ids(config, params, _labels(config, params, num, labels), num)
    tokens = sample_tokens(config, params, rng, context, cache=cache)
    return to_images(config, tokens, levels, data_lib.dataset_info(config.data).shape)


def complete(config, params, rng: jax.Array, images: jax.Array, labels=None) -> jax.Array:
    """The bottom half of each image [B, H, W, C] sampled given its top half (raster order)."""
    levels, _, length = sizes(params)
    context = context_ids(config, params, _labels(config, params, len(images), labels),
                          len(images))
    tokens = sample_tokens(config, params, rng, context, to_tokens(config, images, levels),
                           num_given=length // 2)
    return to_images(config, tokens, levels, images.shape[1:])


def time_sampling(config, params, rng: jax.Array, num: int) -> dict[str, float]:
    """Seconds per image with and without the key-value cache (compilation excluded)."""
    out = {}
    for name, cache in (('cached', True), ('recomputed', False)):
        fn = jax.jit(lambda p, key, cache=cache: sample(config, p, key, num, cache=cache))
        compiled = fn.lower(params, rng).compile()
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, rng))
        out[f'sample_seconds_per_image_{name}'] = (time.perf_counter() - start) / num
    out['kv_cache_speedup'] = (out['sample_seconds_per_image_recomputed']
                               / out['sample_seconds_per_image_cached'])
    return out


# ------------------------------------------------------------------------------------------------
# The family contract

def init(config, rng: jax.Array, example_batch: Batch) -> dict[str, PyTree]:
    length = int(np.prod(np.shape(example_batch['image'])[1:]))
    contexts = labels_lib.num_classes(config.data, config.model) or 1  # 1: no label
    net = network(config, num_levels(config), contexts, length)
    params = net.init(rng, jnp.zeros((1, length), jnp.int32))['params']
    return train_state.create(config, params)


def train_step(config, state, batch: Batch, rng: jax.Array):
    objective = config_lib.objective(OBJECTIVES, config.objective)

    def loss_fn(params, batch):
        terms = objective(config, params, batch, rng)
        return jnp.mean(terms.loss), ({'nll_nats': jnp.mean(terms.nll)}, {}, None)

    (loss, (means, _, _)), grads = train_state.value_and_grad(config, loss_fn, state['params'],
                                                             batch)
    new_state, grad_norm = train_state.apply_gradients(config, state, grads)
    return new_state, {'loss': loss, **means, 'grad_norm': grad_norm}


def log_likelihood(config, params, batch: Batch, rng: jax.Array) -> jax.Array:
    """Exact log p(x) per example [B], nats; a conditional model's marginalises the class under a
    uniform prior."""
    levels, classes, _ = sizes(params)
    tokens = to_tokens(config, batch['image'], levels)
    b = tokens.shape[0]
    if not config.model.conditional:
        context = context_ids(config, params, None, b)
        return jnp.sum(token_log_probs(config, params, tokens, context), axis=-1)

    def given(y):
        context = levels + jnp.full((b,), y, jnp.int32)
        return jnp.sum(token_log_probs(config, params, tokens, context), axis=-1)

    per_class = jax.lax.map(given, jnp.arange(classes))                       # [K, B]
    return jax.nn.logsumexp(per_class, axis=0) - math.log(classes)


def preprocessing(config) -> data_lib.Preprocessing:
    """Binarised data as they are; otherwise a mass on the raw levels ('discrete')."""
    if config.data.binarize:
        return data_lib.preprocessing(config.data)
    low, high = data_lib.value_range(config.data)
    return data_lib.Preprocessing('discrete', num_levels=num_levels(config), low=low, high=high)


def evaluate(config, params, data: dict[str, np.ndarray], rng: jax.Array) -> dict[str, float]:
    """Exact test NLL (nats, bits/dim), per-token perplexity; a conditional model also
    -log p(x | true label); with eval.timing_samples, the key-value cache's sampling speed-up."""
    k_nll, k_time = jax.random.split(rng)

    @jax.jit
    def per_example(params, batch):
        out = {'ll': log_likelihood(config, params, batch, k_nll)}
        if config.model.conditional:
            out['ll_given_label'] = -nll_objective(config, params, batch, k_nll).nll
        return out

    totals = data_lib.map_batches(lambda b: per_example(params, b), data, config.eval.batch_size)
    dims = int(np.prod(data['image'].shape[1:]))
    nll = -float(np.mean(totals['ll']))
    out = {**metrics.likelihood_record(nll, dims, preprocessing(config), prefix='nll'),
           'perplexity': math.exp(nll / dims),
           'sampler_temperature': config.sampler.temperature}  # of the samples' metrics
    if config.model.conditional:
        out['nll_given_label_nats'] = -float(np.mean(totals['ll_given_label']))
    if config.eval.timing_samples:
        out |= time_sampling(config, params, k_time, config.eval.timing_samples)
    return out


def figures(config, params, data: dict[str, np.ndarray], rng: jax.Array, out_dir: str) -> list[str]:
    """Samples and completions of the second half of test examples given their first: image
    grids and rows, or for text the decoded characters (viz.save_text, with .txt twins)."""
    k_sample, k_complete = jax.random.split(rng)
    samples = np.asarray(jax.jit(lambda p, k: sample(config, p, k, 64))(params, k_sample))
    t = config.sampler.temperature
    paths = viz.save_samples(config.data, samples, f'{out_dir}/samples.png',
                             f'autoregressive samples (temperature {t:g})')
    if data_lib.is_text(config.data.name):
        return paths + [_text_completions(config, params, data, k_complete, out_dir)]
    lo, hi = data_lib.value_range(config.data)
    x = jnp.asarray(data['image'][:10])
    labels = jnp.asarray(data['label'][:10])
    given = np.asarray(x).copy()
    given[:, given.shape[1] // 2:] = lo
    fill = jax.jit(lambda p, k: complete(config, p, k, x, labels))
    rows = [np.asarray(x), given] + [np.asarray(fill(params, jax.random.fold_in(k_complete, i)))
                                     for i in range(3)]
    return paths + [viz.save_rows(rows, f'{out_dir}/completions.png',
                                  ['data', 'top half given', 'completions'] + [''] * 2, lo, hi)]


def _text_completions(config, params, data, rng, out_dir) -> str:
    decode = functools.partial(data_lib.decode_text, config.data)
    x = jnp.asarray(data['image'][:4])
    half = x.shape[1] // 2
    filled = np.asarray(jax.jit(lambda p, k: complete(config, p, k, x))(params, rng))
    texts = [f'{given[:half]}|{done[half:]}   (data: {given[half:]!r})'
             for given, done in zip(decode(x), decode(filled))]
    return viz.save_text(texts, f'{out_dir}/completions.png',
                         'completions: the first half given | the model\'s second half')
