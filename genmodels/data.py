"""Datasets by name: TFDS `data_source` (random access, no TensorFlow) -> grain -> batches.

Image datasets hold integer pixels, scaled (and optionally binarized or dequantized) as below. Toy
datasets `toy_<name>` (one per distribution of genmodels/toy.py) hold fixed continuous points drawn
from the toy's sampler with fixed seeds, served as `image` float32 [N, D, 1, 1] with `label` 0, so
that families that flatten images fit them unchanged; their values are used as they are, so they
need scale='none' and neither binarize nor dequantize (an error says so otherwise).

Text datasets, `tiny_shakespeare` (TFDS) and `text:<path>` (a UTF-8 file), are character
streams cut into non-overlapping windows of data.sequence_length characters: each window is one
example, served as `image` [N, L, 1, 1] of character ids over the corpus's vocabulary
(`vocabulary`), scaled like pixels (max_value = vocabulary size - 1), so a family over discrete
tokens (the autoregressive transformer) reads them as it reads pixels. A file's splits are the
fractions of its characters in TEXT_FILE_SPLITS; its vocabulary is every character in the file.

Every batch is a pure function of (dataset, seed, step, global batch size): the example order is
a seeded per-epoch permutation, and the noise of dynamic binarization / dequantization is drawn
from generators keyed by (seed, step, row of the global batch) (`_train_uniform`). So the global
batch of a step is the same whatever the number of processes or devices, and `start_step`
resumes exactly by random access, without reading the earlier batches.

`data_config` fields (an `ml_collections.ConfigDict`):
    name          dataset name, one of `known_datasets()`, or `text:<path>` for a text file.
    sequence_length  text datasets: characters per example (window); 0 for other data.
    data_dir      TFDS data dir, or None for TFDS's default.
    train_split   split that `train_iterator` reads ('train').
    eval_split    split used for evaluation ('test').
    scale         '01': pixels in [0, 1]; '-11': pixels in [-1, 1]; 'none': toy data as they are.
    binarize      dynamic binarization: pixel ~ Bernoulli(pixel / max_value), fresh per visit.
    dequantize    uniform dequantization: (pixel + u) / (max_value + 1), u ~ U[0, 1).
    seed          seed of the training stream: example order and binarization/dequantization
                  noise (the trainer passes it to `train_iterator`).
    eval_seed     seed of the fixed noise in `load_split`, so test likelihoods are reproducible.

Evaluation code walks a whole split in fixed-size batches with `padded_batches` / `map_batches`,
so a jitted function compiles once, whatever the split's size. `preprocessing` describes how the
data became model inputs; it is recorded beside every likelihood.
"""

from collections.abc import Callable, Iterator, Sequence
import dataclasses
import functools
import sys
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from genmodels import bundled, toy

# TFDS image datasets with a fixed-shape integer `image` and a `ClassLabel` `label`; they must be
# prepared once in the ArrayRecord format (see `_prepare_instructions`). EMNIST is left out: TFDS
# stores its images transposed.
_TFDS_IMAGE_DATASETS = ('cifar10', 'cifar100', 'fashion_mnist', 'kmnist', 'mnist', 'svhn_cropped')

# Key words of the noise generator, so training and evaluation noise never share a stream.
_TRAIN_STREAM, _EVAL_STREAM = 0, 1

# Each element of the pipeline is a whole host batch, made from in-memory arrays by numpy; one
# background thread overlaps making the next batches (mostly drawing noise) with the train step,
# which releases the GIL while XLA runs. More threads would only contend for the GIL.
_READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)

_Source = Sequence[dict[str, Any]]  # a TFDS data source: len(source), source[i] -> example dict

TOY_PREFIX = 'toy_'
TEXT_PREFIX = 'text:'  # text:<path of a UTF-8 file>
# TFDS text datasets: one example per split whose `text` feature is the whole split's text.
_TFDS_TEXT_DATASETS = ('tiny_shakespeare',)
# A text file's split -> (start, end) as fractions of its characters.
TEXT_FILE_SPLITS = {'train': (0.0, 0.9), 'test': (0.9, 1.0)}
# Toy split -> (number of points, seed of its draw): fixed sets, like every other dataset's.
TOY_SPLITS = {'train': (20_000, 0), 'test': (10_000, 1)}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    shape: tuple[int, int, int]    # (H, W, C)
    num_classes: int
    max_value: int                 # largest raw pixel value: 255 for uint8 images, 16 for digits;
                                   # 0 for toy data, which are continuous (no levels)
    num_examples: dict[str, int]   # split -> count, for the config's train and eval splits


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How raw data became model inputs; stored beside every likelihood number.

    kind:
      'binarized'   {0, 1} data, model gives a probability mass (Bernoulli decoder): no correction.
      'discrete'    model gives a mass on the num_levels levels directly (e.g. DDPM's discretised
                    decoder, Ho et al. 2020, Sec. 3.3): no correction.
      'dequantized' model gives a density on y = low + (x + u) (high - low) / num_levels,
                    x in {0..num_levels-1}, u ~ U[0, 1)^D: corrected to the discrete data
                    (genmodels.metrics.units.discrete_nll_nats).
      'continuous'  the data are continuous (toy densities): a density, no discrete counterpart.
    """
    kind: str
    num_levels: int = 256   # levels of the raw data: 256 for 8-bit pixels, 2 for binarised
    low: float | None = 0.0  # model-space interval tiled by the num_levels dequantisation bins;
    high: float | None = 1.0  # None for continuous data used as they are (toy data): no interval

    KINDS = ('binarized', 'discrete', 'dequantized', 'continuous')

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise ValueError(f'preprocessing kind {self.kind!r} is not one of {self.KINDS}')
        if self.kind == 'binarized' and self.num_levels != 2:
            raise ValueError(f'binarized data has 2 levels, got num_levels={self.num_levels}')
        if self.low is None or self.high is None:
            if self.kind != 'continuous' or self.low != self.high:
                raise ValueError(f'only continuous data may leave out its interval (low = high = '
                                 f'None); got {self.kind!r} on [{self.low}, {self.high}]')
        elif not self.high > self.low:
            raise ValueError(f'need low < high, got [{self.low}, {self.high}]')

    @property
    def bin_width(self) -> float:
        """Width of one dequantisation bin in model space: (high - low) / num_levels."""
        return (self.high - self.low) / self.num_levels

    def record(self) -> dict:
        """Flat eval.json entries, numbers only (DESIGN.md). Unscaled data (low = high = None)
        have no data_scale_min / data_scale_max."""
        record = {'data_binarized': int(self.kind == 'binarized'),
                  'data_dequantized': int(self.kind == 'dequantized'),
                  'data_num_levels': 0 if self.kind == 'continuous' else self.num_levels}
        if self.low is not None:
            record |= {'data_scale_min': self.low, 'data_scale_max': self.high}
        return record


def known_datasets() -> list[str]:
    """Names accepted as `data_config.name`: bundled datasets, then toy ones, then TFDS ones
    (images, then text); any `text:<path>` is accepted too."""
    return (sorted(bundled.BUNDLED) + sorted(TOY_PREFIX + name for name in toy.TOYS)
            + sorted(_TFDS_IMAGE_DATASETS) + sorted(_TFDS_TEXT_DATASETS))


def is_text(name: str) -> bool:
    return name.startswith(TEXT_PREFIX) or name in _TFDS_TEXT_DATASETS


def is_toy(name: str) -> bool:
    return name.startswith(TOY_PREFIX) and name[len(TOY_PREFIX):] in toy.TOYS


def toy_distribution(name: str) -> toy.Toy:
    """The distribution behind the toy dataset `name` (its exact log-density and sampler)."""
    return toy.get(name[len(TOY_PREFIX):])


def dataset_info(data_config: ml_collections.ConfigDict) -> DatasetInfo:
    """Shape, classes, pixel range and split sizes of the configured dataset."""
    _check_config(data_config)
    if is_toy(data_config.name):
        name, splits = data_config.name, (data_config.train_split, data_config.eval_split)
        return DatasetInfo(name=name, shape=(toy_distribution(name).dim, 1, 1), num_classes=1,
                           max_value=0, num_examples={s: len(_toy_points(name, s)) for s in splits})
    if is_text(data_config.name):
        splits = (data_config.train_split, data_config.eval_split)
        length = data_config.sequence_length
        return DatasetInfo(name=data_config.name, shape=(length, 1, 1), num_classes=1,
                           max_value=len(vocabulary(data_config)) - 1,
                           num_examples={s: len(_text_windows(data_config, s)) for s in splits})
    source, info = _open(data_config, data_config.train_split)
    shape, max_value = _image_spec(data_config.name, info)
    sizes = {data_config.train_split: len(source)}
    if data_config.eval_split != data_config.train_split:
        sizes[data_config.eval_split] = len(_open(data_config, data_config.eval_split)[0])
    return DatasetInfo(name=data_config.name, shape=shape,
                       num_classes=info.features['label'].num_classes, max_value=max_value,
                       num_examples=sizes)


def value_range(data_config: ml_collections.ConfigDict) -> tuple[float, float] | None:
    """(low, high) of the model inputs: (0, 1) or (-1, 1); None for toy data (unbounded)."""
    if is_toy(data_config.name):
        return None
    return (-1.0, 1.0) if data_config.scale == '-11' else (0.0, 1.0)


def to_unit(data_config: ml_collections.ConfigDict, x):
    """Model inputs in the data's value range -> [0, 1] (not clipped); numpy or jax arrays."""
    low, high = value_range(data_config)
    return (x - low) / (high - low)


def from_unit(data_config: ml_collections.ConfigDict, u):
    """[0, 1] -> the data's value range; numpy or jax arrays."""
    low, high = value_range(data_config)
    return low + (high - low) * u


def preprocessing(data_config: ml_collections.ConfigDict) -> Preprocessing:
    """How the data was turned into model inputs: recorded beside every likelihood number."""
    if is_toy(data_config.name):
        return Preprocessing('continuous', low=None, high=None)  # used as they are
    low, high = value_range(data_config)
    if data_config.binarize:
        return Preprocessing('binarized', num_levels=2, low=low, high=high)
    if data_config.dequantize:
        levels = dataset_info(data_config).max_value + 1
        return Preprocessing('dequantized', num_levels=levels, low=low, high=high)
    return Preprocessing('continuous', low=low, high=high)


def padded_batches(arrays: dict[str, np.ndarray], batch_size: int
                   ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """(batch, num_valid) over a whole split in fixed-size batches, the last padded by repeating
    the last example; only the first num_valid rows of a batch are real. Each batch also carries
    `index` int32 [B]: the example's position in the split (which keys its noise, genmodels.noise).
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


def check_batch_fits(data_config: ml_collections.ConfigDict, global_batch_size: int,
                     num_examples: int) -> None:
    if global_batch_size > num_examples:
        raise ValueError(f'train.batch_size={global_batch_size} exceeds the {num_examples} '
                         f'examples of {data_config.name}:{data_config.train_split}; use a '
                         f'smaller batch.')


def train_iterator(data_config: ml_collections.ConfigDict, global_batch_size: int, seed: int,
                   start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Endless host-local training batches, starting at step `start_step`.

    Yields dicts: `image` float32 [b, H, W, C], `label` int32 [b], `index` int32 [b] (row of the
    example in the global batch), where b = global_batch_size // jax.process_count() and process p
    gets rows [p * b, (p + 1) * b) of the global batch. Each epoch is a new seeded permutation of
    the split, whose last incomplete global batch is dropped.
    """
    _check_config(data_config)
    _check_seed(seed, 'seed')
    num_examples, read, max_value = _reader(data_config, data_config.train_split)
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
    # is decoded once into memory: TFDS decodes records in Python at ~35 us each, 4.5 ms for a
    # batch of 128, as slow as a whole train step.
    all_pixels, all_labels = read(np.arange(num_examples))
    steps_per_epoch = num_examples // global_batch_size  # the incomplete last batch is dropped

    @functools.lru_cache(maxsize=2)  # prefetched batches may straddle two epochs
    def epoch_order(epoch: int) -> np.ndarray:
        return np.random.default_rng([seed, epoch]).permutation(num_examples)  # [N] example ids

    def load_batch(step: int) -> dict[str, np.ndarray]:
        epoch, batch_in_epoch = divmod(step, steps_per_epoch)
        ids = epoch_order(epoch)[batch_in_epoch * global_batch_size + local_rows]  # [b]
        pixels = all_pixels[ids]
        noise = functools.partial(_train_uniform, (seed, _TRAIN_STREAM, step), local_rows,
                                  pixels.shape[1:])
        images = _preprocess(pixels, data_config, max_value, noise)
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
    _check_config(data_config)
    _check_seed(data_config.eval_seed, 'data_config.eval_seed')
    num_examples, read, max_value = _reader(data_config, split)
    num = num_examples if max_examples is None else min(max_examples, num_examples)
    if num <= 0:
        raise ValueError(f'load_split needs max_examples >= 1, got {max_examples}.')
    positions = np.arange(num)
    pixels, labels = read(positions)
    noise = functools.partial(_eval_uniform, (data_config.eval_seed, _EVAL_STREAM, 0), positions,
                              pixels.shape[1:])
    images = _preprocess(pixels, data_config, max_value, noise)
    return {'image': images, 'label': labels}


def _check_config(data_config: ml_collections.ConfigDict) -> None:
    if data_config.name not in known_datasets() and not is_text(data_config.name):
        raise ValueError(f'Unknown dataset {data_config.name!r}; known datasets: '
                         f'{", ".join(known_datasets())}, or text:<path> for a UTF-8 text file.')
    if is_text(data_config.name):
        length = data_config.get('sequence_length', 0)
        if not (isinstance(length, int) and length >= 1):
            raise ValueError(f'{data_config.name} is text: set data.sequence_length to the '
                             f'characters per example (e.g. 256), got {length!r}.')
        if data_config.scale != '01' or data_config.binarize or data_config.dequantize:
            raise ValueError(f"{data_config.name} holds characters as tokens: set "
                             f"data.scale='01', data.binarize=False and data.dequantize=False.")
    elif data_config.get('sequence_length', 0):
        raise ValueError(f'data.sequence_length is for text datasets; {data_config.name} is not '
                         f'text, so set it to 0.')
    if is_toy(data_config.name):
        if data_config.scale != 'none' or data_config.binarize or data_config.dequantize:
            raise ValueError(
                f"{data_config.name} holds continuous points used as they are: set "
                f"data.scale='none', data.binarize=False and data.dequantize=False (got "
                f"{data_config.scale!r}, {data_config.binarize}, {data_config.dequantize}).")
        return
    if data_config.scale not in ('01', '-11'):
        raise ValueError(f"data_config.scale must be '01' or '-11' for image data ('none' is for "
                         f"toy data), got {data_config.scale!r}.")
    if data_config.binarize and data_config.dequantize:
        raise ValueError('data_config.binarize and data_config.dequantize are both True; choose '
                         'at most one (binarized data is discrete, dequantized data continuous).')


def _check_seed(seed: int, what: str) -> None:
    # The evaluation seed is a 64-bit word of a Philox key (`_eval_uniform`); both seeds are held
    # to that range.
    if not 0 <= seed < 2**64:
        raise ValueError(f'{what} must be in [0, 2**64), got {seed}.')


def _prepare_instructions(name: str, data_dir: str) -> str:
    return (f'Prepare it once where TensorFlow and network are available: `tfds build {name} '
            f'--data_dir={data_dir} --file_format=array_record` (or `tfds.builder({name!r}, '
            f"data_dir={data_dir!r}, file_format='array_record').download_and_prepare()`), then "
            f'copy {data_dir} here.')


def _open(data_config: ml_collections.ConfigDict, split: str
          ) -> tuple[_Source, tfds.core.DatasetInfo]:
    """Random-access source of `split` and the dataset's info; builds bundled datasets if needed."""
    name, data_dir = data_config.name, data_config.data_dir
    if name in bundled.BUNDLED:
        bundled.prepare(name, data_dir)
    try:
        # download=False: a missing dataset must fail here, not start a download.
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                                  try_gcs=False)
    except Exception:
        # TFDS reports a missing dataset as an unrelated file-format error; say what to do instead.
        builder = tfds.builder(name, data_dir=data_dir)
        root = str(builder.data_dir_root)
        if not builder.is_prepared():
            raise FileNotFoundError(f'Dataset {name!r} is not prepared in {root}. '
                                    f'{_prepare_instructions(name, root)}') from None
        if builder.info.file_format not in tfds.core.file_adapters.FileFormat.with_random_access():
            # `tfds build` writes TFRecord by default, which TFDS can only read with TensorFlow.
            raise ValueError(f'Dataset {name!r} in {root} is stored as '
                             f'{builder.info.file_format.value}, which has no random access. '
                             f'Delete {builder.data_dir}. {_prepare_instructions(name, root)}'
                             ) from None
        splits = builder.info.splits
        try:
            empty = splits[split].num_examples == 0
        except (KeyError, ValueError):  # an unknown split name or malformed slice
            raise ValueError(f'{name} has no split {split!r}; its splits are '
                             f'{", ".join(sorted(splits))} (slices such as train[:90%] work).'
                             ) from None
        if empty:
            raise ValueError(f'split {split!r} of {name} has no examples; give a split or '
                             f'slice that holds some.') from None
        raise
    return source, source.dataset_info


def _reader(data_config: ml_collections.ConfigDict, split: str
            ) -> tuple[int, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], int]:
    """(number of examples of `split`, read(ids [n]) -> (raw values, int32 labels), max_value)."""
    if is_toy(data_config.name):
        points = _toy_points(data_config.name, split)
        return len(points), lambda ids: (points[ids], np.zeros(len(ids), np.int32)), 0
    if is_text(data_config.name):
        windows = _text_windows(data_config, split)
        return (len(windows), lambda ids: (windows[ids], np.zeros(len(ids), np.int32)),
                len(vocabulary(data_config)) - 1)
    source, info = _open(data_config, split)
    _, max_value = _image_spec(data_config.name, info)
    where = f'{data_config.name}:{split}'
    return len(source), lambda ids: _read(source, ids, max_value, where), max_value


@functools.lru_cache(maxsize=8)
def _toy_points(name: str, split: str) -> np.ndarray:
    """The fixed points of a toy split, float32 [N, D, 1, 1]: the sampler's draw from TOY_SPLITS."""
    if split not in TOY_SPLITS:
        raise ValueError(f'{name} has the splits {sorted(TOY_SPLITS)}, got {split!r}.')
    num, seed = TOY_SPLITS[split]
    points = np.asarray(toy_distribution(name).sample(jax.random.key(seed), num), np.float32)
    points.flags.writeable = False  # shared by every caller of the cache
    return points.reshape(num, -1, 1, 1)


def vocabulary(data_config: ml_collections.ConfigDict) -> str:
    """The characters of a text dataset in id order: every character of the corpus, sorted."""
    return _text_corpus(data_config.name, data_config.data_dir)[0]


def decode_text(data_config: ml_collections.ConfigDict, values) -> list[str]:
    """A text dataset's examples or samples as served ([N, L, 1, 1] in [0, 1]: id / max_value)
    -> N strings."""
    chars = vocabulary(data_config)
    ids = np.rint(np.asarray(values, np.float64).reshape(len(values), -1) * (len(chars) - 1))
    return [''.join(chars[i] for i in row) for row in ids.astype(np.int64)]


@functools.lru_cache(maxsize=4)
def _text_corpus(name: str, data_dir: str | None) -> tuple[str, dict[str, np.ndarray]]:
    """(vocabulary, split -> character ids uint16 [num_chars]) of a text dataset."""
    if name.startswith(TEXT_PREFIX):
        path = name[len(TEXT_PREFIX):]
        try:
            with open(path, encoding='utf-8') as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f'{name}: cannot read {path} as UTF-8 text ({e}); give the path of '
                             f'a text file.') from None
        bounds = {s: (round(a * len(text)), round(b * len(text)))
                  for s, (a, b) in TEXT_FILE_SPLITS.items()}
        texts = {s: text[a:b] for s, (a, b) in bounds.items()}
    else:
        splits = tfds.builder(name, data_dir=data_dir).info.splits
        names = list(splits) or ['train', 'validation', 'test']  # mock_data leaves them empty
        data_config = ml_collections.ConfigDict({'name': name, 'data_dir': data_dir})
        texts = {}
        for split in names:
            source, _ = _open(data_config, split)
            texts[split] = ''.join(_as_str(source[i]['text']) for i in range(len(source)))
    chars = ''.join(sorted(set(''.join(texts.values()))))
    if not 2 <= len(chars) <= 2**16:
        raise ValueError(f'{name} has {len(chars)} distinct characters; a text dataset needs 2 '
                         f'to 65,536.')
    ids = {c: i for i, c in enumerate(chars)}
    return chars, {s: np.array([ids[c] for c in t], np.uint16) for s, t in texts.items()}


def _as_str(text) -> str:
    return text.decode('utf-8') if isinstance(text, bytes) else str(text)


@functools.lru_cache(maxsize=8)
def _text_windows_cached(name: str, data_dir: str | None, split: str, length: int) -> np.ndarray:
    _, splits = _text_corpus(name, data_dir)
    if split not in splits:
        raise ValueError(f'{name} has the splits {sorted(splits)}, got {split!r}.')
    ids = splits[split]
    count = len(ids) // length
    if count == 0:
        raise ValueError(f'split {split!r} of {name} has {len(ids)} characters, fewer than one '
                         f'window of data.sequence_length={length}; use a shorter window.')
    windows = ids[:count * length].reshape(count, length, 1, 1)
    windows.flags.writeable = False  # shared by every caller of the cache
    return windows


def _text_windows(data_config: ml_collections.ConfigDict, split: str) -> np.ndarray:
    """The examples of a text split: consecutive windows of data.sequence_length character ids,
    uint16 [N, L, 1, 1] (the characters after the last whole window are left out)."""
    return _text_windows_cached(data_config.name, data_config.data_dir, split,
                                data_config.sequence_length)


def _image_spec(name: str, info: tfds.core.DatasetInfo) -> tuple[tuple[int, int, int], int]:
    """(H, W, C) and largest raw pixel value, from the TFDS features and metadata."""
    image = info.features['image']
    if (len(image.shape) != 3 or None in image.shape
            or not np.issubdtype(image.np_dtype, np.integer)):
        raise ValueError(f'{name}: expected integer images of fixed shape [H, W, C], got '
                         f'{image.np_dtype} {image.shape}.')
    metadata = info.metadata or {}
    max_value = int(metadata.get('max_value', np.iinfo(image.np_dtype).max))
    if max_value < 1:
        raise ValueError(f'{name}: max_value must be >= 1, got {max_value}.')
    return tuple(image.shape), max_value


def _read(source: _Source, ids: np.ndarray, max_value: int, where: str
          ) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels [n, H, W, C] and int32 labels [n] of examples `ids`, checked to lie in range.

    Images are integers (see `_image_spec`), so they cannot hold NaN or Inf; out-of-range values
    would silently leave [0, 1] after scaling, so they are an error.
    """
    # One record at a time: as fast as `__getitems__` here, and `tfds.testing.mock_data` only
    # mocks `__getitem__`.
    examples = [source[i] for i in ids.tolist()]
    pixels = np.stack([example['image'] for example in examples])
    labels = np.array([example['label'] for example in examples], np.int32)
    if pixels.min() < 0 or pixels.max() > max_value:
        raise ValueError(f'{where}: pixel values span [{pixels.min()}, {pixels.max()}], expected '
                         f'[0, {max_value}].')
    return pixels, labels


def _eval_uniform(key: tuple[int, int, int], rows: np.ndarray, shape: tuple[int, ...]
                  ) -> np.ndarray:
    """U[0, 1) float32 noise [len(rows), *shape] of evaluation splits; row i depends only on
    (*key, rows[i]).

    Philox is counter-based (Salmon et al., 2011): key (seed, stream) and a counter starting at
    (0, row, step, 0) give every (step, row) its own stream. This one-stream-per-row scheme draws
    the fixed test noise on which every reported likelihood was measured, so it stays as it is;
    training batches, drawn at every step, use the cheaper `_train_uniform`.
    """
    seed, stream, step = key
    bits = np.random.Philox(key=[seed, stream])
    generator = np.random.Generator(bits)
    fresh = bits.state  # empty output buffer; resetting it is 3x cheaper than a new Philox per row
    noise = np.empty((len(rows), *shape), np.float32)
    for i, row in enumerate(rows):
        fresh['state']['counter'] = np.array([0, row, step, 0], np.uint64)
        bits.state = fresh
        noise[i] = generator.random(shape, dtype=np.float32)
    return noise


# Rows of the global batch that share one stream of training noise.
_NOISE_BLOCK_ROWS = 64


def _train_uniform(key: tuple[int, int, int], rows: np.ndarray, shape: tuple[int, ...]
                   ) -> np.ndarray:
    """U[0, 1) float32 noise [len(rows), *shape] of a training batch, on numpy's float32 grid
    (multiples of 2**-24); row i depends only on (*key, rows[i]), so a process drawing its own rows
    of the global batch agrees with a single process drawing all of them.

    Rows come in blocks of _NOISE_BLOCK_ROWS: block b of step `step` is one PCG64DXSM stream seeded
    by (seed, stream, step, b) through numpy's SeedSequence, read as raw 32-bit words. Per-row
    Philox streams (`_eval_uniform`) cost a Python round trip per row and Philox's 10 rounds per
    word: preprocessing a batch of 2,048 binarised MNIST digits took 24-37 ms with them against
    16-22 ms with this, next to the MLP VAE's 100 ms step; a batch of 128, 1.2-2.5 ms against
    0.5-1.2 ms (alternating, `_preprocess` alone, cores shared with a training run).
    """
    seed, stream, step = key
    per_block = _NOISE_BLOCK_ROWS * int(np.prod(shape))
    first, last = int(rows.min()) // _NOISE_BLOCK_ROWS, int(rows.max()) // _NOISE_BLOCK_ROWS
    raw = np.stack([  # [blocks, ceil(per_block / 2)] 64-bit words, two 32-bit words each
        np.random.PCG64DXSM([seed, stream, step, block]).random_raw(-(-per_block // 2))
        for block in range(first, last + 1)])
    bits = raw.view(np.uint32)[:, :per_block].reshape(-1, *shape)
    offset = rows - first * _NOISE_BLOCK_ROWS
    if np.array_equal(offset, np.arange(offset[0], offset[0] + len(rows))):
        bits = bits[offset[0]:offset[0] + len(rows)]  # a process's rows are consecutive: no copy
    else:
        bits = bits[offset]
    # numpy's own float32 draw: the top 24 bits of a 32-bit word, times 2**-24.
    return np.multiply(bits >> 8, np.float32(2.0**-24), dtype=np.float32)


def _preprocess(pixels: np.ndarray, data_config: ml_collections.ConfigDict, max_value: int,
                noise: Callable[[], np.ndarray]) -> np.ndarray:
    """Raw integer pixels [n, H, W, C] -> float32 in [0, 1] or [-1, 1], with optional noise; toy
    points are returned as they are.

    `noise()` draws the examples' U[0, 1) noise, float32 [n, H, W, C] (`_train_uniform` or
    `_eval_uniform`); it is called only when the config binarizes or dequantizes.
    """
    if is_toy(data_config.name):
        return pixels
    x = pixels.astype(np.float32)
    if data_config.binarize:
        u = noise()
        x = (u < x / max_value).astype(np.float32)  # P(1) = pixel / max_value
    elif data_config.dequantize:
        u = noise()
        # Keep 16 fractional bits so that pixel + u is exact in float32 (pixel < 2**8) and cannot
        # round up into the next bin: x stays in [pixel, pixel + 1) / (max_value + 1).
        u = np.floor(u * 2**16) / 2**16
        x = (x + u) / (max_value + 1)
    else:
        x = x / max_value
    if data_config.scale == '-11':
        x = 2 * x - 1
    return x
