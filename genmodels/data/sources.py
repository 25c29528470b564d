"""Datasets by name: what exists, its shape and splits, and the raw values of its examples.

Image datasets are read through TFDS `data_source` (random access, no TensorFlow) and hold integer
pixels (genmodels/data/preprocess.py scales them); `mnist`, `fashion_mnist` and `cifar10` are
prepared from their original files when TFDS has not prepared them (originals.py). The user's
own images, `images:<folder>` and `arrays:<file>.npz`, are read by local.py. Toy datasets `toy_<name>` (one per distribution
of genmodels/data/toy.py) hold fixed continuous points drawn from the toy's sampler with fixed
seeds, served as `image` float32 [N, D, 1, 1] with `label` 0, so that families that flatten images
fit them unchanged; their values are used as they are, so they need scale='none' and neither
binarize nor dequantize (an error says so otherwise).

Text datasets, `tiny_shakespeare` (TFDS) and `text:<path>` (a UTF-8 file), are character
streams cut into non-overlapping windows of data.sequence_length characters: each window is one
example, served as `image` [N, L, 1, 1] of character ids over the corpus's vocabulary
(`vocabulary`), scaled like pixels (max_value = vocabulary size - 1), so a family over discrete
tokens (the autoregressive transformer) reads them as it reads pixels. A file's splits are the
fractions of its characters in TEXT_FILE_SPLITS; its vocabulary is every character in the file.

`data_config` fields (an `ml_collections.ConfigDict`):
    name          dataset name, one of `known_datasets()`, `text:<path>` for a text file,
                  `images:<folder>` or `arrays:<file>.npz` for the user's images (local.py).
    sequence_length  text datasets: characters per example (window); 0 for other data.
    image_size    images:/arrays: data: shorter side scaled to S, centre S x S cut; 0 as is.
    image_channels  images:/arrays: data: 1 (greyscale) or 3 (RGB); 0 as the files are.
    data_dir      TFDS data dir, or None for TFDS's default.
    train_split   split that `train_iterator` reads ('train').
    eval_split    split used for evaluation ('test').
    scale         '01': pixels in [0, 1]; '-11': pixels in [-1, 1]; 'none': toy data as they are.
    binarize      dynamic binarization: pixel ~ Bernoulli(pixel / max_value), fresh per visit.
    dequantize    uniform dequantization: (pixel + u) / (max_value + 1), u ~ U[0, 1).
    seed          seed of the training stream: example order and binarization/dequantization
                  noise (the trainer passes it to `train_iterator`).
    eval_seed     seed of the fixed noise in `load_split`, so test likelihoods are reproducible.
"""

from collections.abc import Callable, Sequence
import functools
import hashlib
import dataclasses
from typing import Any

import jax
import ml_collections
from array_record.python.array_record_data_source import ArrayRecordDataSource
import numpy as np
import tensorflow_datasets as tfds

from genmodels.data import bundled, local, originals, toy

# TFDS image datasets with a fixed-shape integer `image` and a `ClassLabel` `label`; they must be
# prepared once in the ArrayRecord format (see `_prepare_instructions`). EMNIST is left out: TFDS
# stores its images transposed.
_TFDS_IMAGE_DATASETS = ('cifar10', 'cifar100', 'fashion_mnist', 'kmnist', 'mnist', 'svhn_cropped')

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


def known_datasets() -> list[str]:
    """Names accepted as `data_config.name`: bundled datasets, then toy ones, then TFDS ones
    (images, then text); any `text:<path>`, `images:<folder>` and `arrays:<file>.npz` is accepted
    too."""
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
    check_config(data_config)
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
    if local.is_local(data_config.name):
        found = _local(data_config)
        splits = {s: _local_split(data_config, found, s)
                  for s in (data_config.train_split, data_config.eval_split)}
        return DatasetInfo(name=data_config.name, shape=splits[data_config.train_split][0].shape[1:],
                           num_classes=found.num_classes, max_value=255,
                           num_examples={s: len(x) for s, (x, _) in splits.items()})
    source, info = _open(data_config, data_config.train_split)
    shape, max_value = _image_spec(data_config.name, info)
    sizes = {data_config.train_split: len(source)}
    if data_config.eval_split != data_config.train_split:
        sizes[data_config.eval_split] = len(_open(data_config, data_config.eval_split)[0])
    return DatasetInfo(name=data_config.name, shape=shape,
                       num_classes=info.features['label'].num_classes, max_value=max_value,
                       num_examples=sizes)


def identity(data_config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What identifies the configured data beyond its name, recorded by a run and checked when it
    resumes: the sizes of its splits, and the sha256 of a text or .npz file, of a folder's
    decoded images, or a TFDS dataset's version (toy data are fixed by their name)."""
    info = dataset_info(data_config)
    record: dict[str, Any] = {'num_examples': dict(info.num_examples)}
    name = data_config.name
    if name.startswith(TEXT_PREFIX) or name.startswith(local.ARRAYS_PREFIX):
        with open(name.partition(':')[2], 'rb') as f:
            record['sha256'] = hashlib.sha256(f.read()).hexdigest()
    elif local.is_local(name):
        digest = hashlib.sha256()
        for split, (pixels, labels) in sorted(_local(data_config).splits.items()):
            digest.update(split.encode() + pixels.tobytes() + labels.tobytes())
        record['sha256'] = digest.hexdigest()
    elif not is_toy(name):
        record['version'] = str(_open(data_config, data_config.train_split)[1].version)
    return record


def check_config(data_config: ml_collections.ConfigDict) -> None:
    name = data_config.name
    if name not in known_datasets() and not is_text(name) and not local.is_local(name):
        raise ValueError(f'Unknown dataset {name!r}; known datasets: '
                         f'{", ".join(known_datasets())}, or text:<path> for a UTF-8 text file, '
                         f'images:<folder> for PNG/JPEG files, arrays:<file>.npz for arrays.')
    size, channels = data_config.get('image_size', 0), data_config.get('image_channels', 0)
    if local.is_local(name):
        local.check_settings(name, size, channels)
    elif size or channels:
        raise ValueError(f'data.image_size and data.image_channels are for images:<folder> and '
                         f'arrays:<file> data; {name} is neither, so set both to 0.')
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


def check_seed(seed: int, what: str) -> None:
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
        with bundled.no_temp_litter():
            source = tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                                      try_gcs=False)
    except Exception:
        # TFDS reports a missing dataset as an unrelated file-format error; say what to do instead.
        with bundled.no_temp_litter():
            builder = tfds.builder(name, data_dir=data_dir)
        root = str(builder.data_dir_root)
        if not builder.is_prepared() and name in originals.ORIGINALS:
            # Prepared here from its original files when they are found (else a message says
            # where they come from), then read as any prepared dataset.
            originals.prepare(name, data_dir)
            return _open(data_config, split)
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


def reader(data_config: ml_collections.ConfigDict, split: str
            ) -> tuple[int, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], int]:
    """(number of examples of `split`, read(ids [n]) -> (raw values, int32 labels), max_value)."""
    if is_toy(data_config.name):
        points = _toy_points(data_config.name, split)
        return len(points), lambda ids: (points[ids], np.zeros(len(ids), np.int32)), 0
    if is_text(data_config.name):
        windows = _text_windows(data_config, split)
        return (len(windows), lambda ids: (windows[ids], np.zeros(len(ids), np.int32)),
                len(vocabulary(data_config)) - 1)
    if local.is_local(data_config.name):
        pixels, labels = _local_split(data_config, _local(data_config), split)
        return len(pixels), lambda ids: (pixels[ids], labels[ids]), 255
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


def _local(data_config: ml_collections.ConfigDict) -> local.LocalData:
    return local.load(data_config.name, data_config.get('image_size', 0),
                      data_config.get('image_channels', 0), data_config.data_dir)


def _local_split(data_config: ml_collections.ConfigDict, found: local.LocalData, split: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    if split not in found.splits:
        raise ValueError(f'{data_config.name} has the splits {", ".join(local.SPLITS)}, got '
                         f'{split!r}.')
    pixels, labels = found.splits[split]
    if len(pixels) == 0:
        raise ValueError(f'split {split!r} of {data_config.name} holds no images; give it some '
                         f'(the fixed split holds out every {local.TEST_EVERY}th image of each '
                         f'class, so a class needs {local.TEST_EVERY} images to reach it).')
    return pixels, labels


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
        with bundled.no_temp_litter():
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
    if isinstance(getattr(source, 'data_source', None), ArrayRecordDataSource):
        # Many records per call: ArrayRecord reads them in parallel (Fashion-MNIST's 60,000
        # training images in 5 s, against 13 s one at a time).
        examples = source.__getitems__(ids.tolist())
    else:  # one at a time: `tfds.testing.mock_data`'s source reads no other way
        examples = [source[i] for i in ids.tolist()]
    pixels = np.stack([example['image'] for example in examples])
    labels = np.array([example['label'] for example in examples], np.int32)
    if pixels.min() < 0 or pixels.max() > max_value:
        raise ValueError(f'{where}: pixel values span [{pixels.min()}, {pixels.max()}], expected '
                         f'[0, {max_value}].')
    return pixels, labels
