"""Batches: the endless training stream and whole splits for evaluation.

Every training batch is a pure function of (dataset, seed, step, global batch size): the example
order is a seeded per-epoch permutation, and the noise of dynamic binarization / dequantization is
keyed by (seed, step, row of the global batch) (genmodels/data/preprocess.py). So the global batch
of a step is the same whatever the number of processes or devices, and `start_step` resumes
exactly by random access, without reading the earlier batches.

Evaluation code walks a whole split in fixed-size batches with `padded_batches` / `map_batches`,
so a jitted function compiles once, whatever the split's size.
"""

from collections.abc import Callable, Iterator
import functools
import sys
from typing import Any

import grain
import jax
import ml_collections
import numpy as np

from genmodels.data import preprocess, sources

# Each element of the pipeline is a whole host batch, made from in-memory arrays by numpy; one
# background thread overlaps making the next batches (mostly drawing noise) with the train step,
# which releases the GIL while XLA runs. More threads would only contend for the GIL.
_READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)


def padded_batches(arrays: dict[str, np.ndarray], batch_size: int
                   ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """(batch, num_valid) over a whole split in fixed-size batches, the last padded by repeating
    the last example; only the first num_valid rows of a batch are real. Each batch also carries
    `index` int32 [B]: the example's position in the split (which keys its noise, genmodels.nn.noise).
    """
    n = len(next(iter(arrays.values())))
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        take = np.minimum(idx, n - 1)
        batch = {k: v[take] for k, v in arrays.items() if k != 'index'}
        batch['index'] = idx.astype(np.int32)
        yield batch, int(min(batch_size, n - start))


def map_batches(fn: Callable[[dict[str, np.ndarray]], Any], arrays: dict[str, np.ndarray],
                batch_size: int) -> Any:
    """fn(batch) -> a pytree of [B, ...] arrays, applied over `padded_batches` (so a jitted fn
    compiles once) and concatenated over the real rows: a pytree of numpy [N, ...] arrays."""
    outs = [jax.tree.map(lambda x, n=n: np.asarray(x)[:n], fn(batch))
            for batch, n in padded_batches(arrays, batch_size)]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def check_batch_size(global_batch_size: int, grad_accum_steps: int = 1) -> None:
    """The global batch is sharded over every device, each device's share in grad_accum_steps
    micro-batches: it must divide evenly."""
    n = jax.device_count()
    if global_batch_size % n:
        raise ValueError(
            f'train.batch_size={global_batch_size} does not divide evenly over {n} devices; '
            f'use a multiple of {n}.')
    if global_batch_size % (n * grad_accum_steps):
        raise ValueError(
            f'train.batch_size={global_batch_size} does not split into '
            f'train.grad_accum_steps={grad_accum_steps} micro-batches over {n} devices; use a '
            f'multiple of {n * grad_accum_steps}.')


def check_batch_fits(data_config: ml_collections.ConfigDict, global_batch_size: int,
                     num_examples: int) -> None:
    if global_batch_size > num_examples:
        raise ValueError(f'train.batch_size={global_batch_size} exceeds the {num_examples} '
                         f'examples of {data_config.name}:{data_config.train_split}; use a '
                         f'smaller batch.')


def train_iterator(data_config: ml_collections.ConfigDict, global_batch_size: int, seed: int,
                   start_step: int = 0, pairs: dict[str, np.ndarray] | None = None
                   ) -> Iterator[dict[str, np.ndarray]]:
    """Endless host-local training batches, starting at step `start_step`.

    Yields dicts: `image` float32 [b, H, W, C], `label` int32 [b], `index` int32 [b] (row of the
    example in the global batch), where b = global_batch_size // jax.process_count() and process p
    gets rows [p * b, (p + 1) * b) of the global batch. Each epoch is a new seeded permutation of
    the split, whose last incomplete global batch is dropped.

    `pairs`, arrays [N, ...] with an `image` key (e.g. a reflow's noise and the teacher's images),
    replace the train split: their rows are drawn the same way and used as they are.
    """
    sources.check_config(data_config)
    sources.check_seed(seed, 'seed')
    if pairs is None:
        num_examples, read, max_value = sources.reader(data_config, data_config.train_split)
    else:
        num_examples = len(pairs['image'])
    num_processes, process = jax.process_count(), jax.process_index()
    if global_batch_size <= 0 or global_batch_size % num_processes:
        raise ValueError(f'global_batch_size={global_batch_size} must be a positive multiple of '
                         f'the number of processes ({num_processes}).')
    check_batch_fits(data_config, global_batch_size, num_examples)
    if start_step < 0:
        raise ValueError(f'start_step must be >= 0, got {start_step}.')
    local_batch = global_batch_size // num_processes
    local_rows = process * local_batch + np.arange(local_batch)  # [b] rows of the global batch
    # The supported datasets are small (at most 73k images of 32x32x3 uint8, 225 MB), so the split
    # is decoded once into memory: TFDS decodes records one by one in Python, as slow per batch as
    # a whole train step (measured: docs/benchmarks.md).
    if pairs is None:
        all_pixels, all_labels = read(np.arange(num_examples))
    steps_per_epoch = num_examples // global_batch_size  # the incomplete last batch is dropped

    @functools.lru_cache(maxsize=2)  # prefetched batches may straddle two epochs
    def epoch_order(epoch: int) -> np.ndarray:
        return np.random.default_rng([seed, epoch]).permutation(num_examples)  # [N] example ids

    def load_batch(step: int) -> dict[str, np.ndarray]:
        epoch, batch_in_epoch = divmod(step, steps_per_epoch)
        ids = epoch_order(epoch)[batch_in_epoch * global_batch_size + local_rows]  # [b]
        if pairs is not None:
            return {**{k: v[ids] for k, v in pairs.items()},
                    'label': np.zeros(len(ids), np.int32), 'index': local_rows.astype(np.int32)}
        pixels = all_pixels[ids]
        noise = functools.partial(preprocess.train_uniform, (seed, preprocess.TRAIN_STREAM, step), local_rows,
                                  pixels.shape[1:])
        images = preprocess.scale_pixels(pixels, data_config, max_value, noise)
        return {'image': images, 'label': all_labels[ids], 'index': local_rows.astype(np.int32)}

    # Element s of this dataset is the batch of step s: random access makes resuming free.
    steps = grain.MapDataset.range(start_step, sys.maxsize).map(load_batch)
    return iter(steps.to_iter_dataset(_READ_OPTIONS))


def load_split(data_config: ml_collections.ConfigDict, split: str,
               max_examples: int | None = None) -> dict[str, np.ndarray]:
    """The first `max_examples` (default: all) examples of `split` in the dataset's order.

    Preprocessed as in training, but the binarization / dequantization noise is fixed by
    `data_config.eval_seed` and the example's position, so evaluations are reproducible.
    Returns `image` float32 [N, H, W, C] and `label` int32 [N].
    """
    sources.check_config(data_config)
    sources.check_seed(data_config.eval_seed, 'data_config.eval_seed')
    num_examples, read, max_value = sources.reader(data_config, split)
    num = num_examples if max_examples is None else min(max_examples, num_examples)
    if num <= 0:
        raise ValueError(f'load_split needs max_examples >= 1, got {max_examples}.')
    positions = np.arange(num)
    pixels, labels = read(positions)
    noise = functools.partial(preprocess.eval_uniform, (data_config.eval_seed, preprocess.EVAL_STREAM, 0), positions,
                              pixels.shape[1:])
    images = preprocess.scale_pixels(pixels, data_config, max_value, noise)
    return {'image': images, 'label': labels}
