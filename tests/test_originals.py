"""Full-size datasets prepared offline from their original files (genmodels/data/originals.py):
files written here in the original formats, and Debian's Fashion-MNIST files where installed."""

import gzip
import io
import os
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import common
from genmodels import data, trainer
from genmodels.data import originals
from genmodels.metrics import sample_quality
from tests import helpers

FASHION_DIR = originals.ORIGINALS['fashion_mnist'].searched[0]
# .ci/run sets this: there the files must be present, so a missing file fails instead of skipping.
REQUIRE_FASHION = os.environ.get('GENMODELS_REQUIRE_FASHION_MNIST') == '1'


def fashion_files_or_skip() -> None:
    present = all(os.path.isfile(os.path.join(FASHION_DIR, f))
                  for f in originals.ORIGINALS['fashion_mnist'].sha256)
    if not present:
        if REQUIRE_FASHION:
            pytest.fail(f'GENMODELS_REQUIRE_FASHION_MNIST=1 but {FASHION_DIR} lacks the '
                        'Fashion-MNIST files: apt-get install dataset-fashion-mnist')
        pytest.skip(f'Fashion-MNIST files not in {FASHION_DIR} (apt-get install '
                    'dataset-fashion-mnist)')


def write_idx(path, array: np.ndarray) -> None:
    header = (0x0800 + array.ndim).to_bytes(4, 'big') + b''.join(
        n.to_bytes(4, 'big') for n in array.shape)
    with gzip.open(path, 'wb') as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_idx_set(folder, num_train: int, num_test: int) -> dict:
    """The four MNIST-format files of `num_train` + `num_test` images whose pixel [0, 0] is the
    image's number and [0, 1] its label; returns (images, labels) per split."""
    rng = np.random.default_rng(0)
    made = {}
    for split, prefix, n, offset in (('train', 'train', num_train, 0),
                                     ('test', 't10k', num_test, num_train)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images[:, 0, 0] = offset + np.arange(n)
        images[:, 0, 1] = labels
        write_idx(folder / f'{prefix}-images-idx3-ubyte.gz', images)
        write_idx(folder / f'{prefix}-labels-idx1-ubyte.gz', labels)
        made[split] = (images, labels)
    return made


def digests_of(folder, name: str) -> dict:
    return {f: (originals.file_sha256(folder / f),) for f in originals.ORIGINALS[name].sha256}


def read_all(name: str, data_dir: str, split: str) -> list[dict]:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                              try_gcs=False)
    return [source[i] for i in range(len(source))]


@pytest.mark.parametrize('name', ['mnist', 'fashion_mnist'])
def test_idx_files_become_tfds_own_dataset(tmp_path, name):
    files = tmp_path / 'files'
    files.mkdir()
    made = write_idx_set(files, 30, 12)
    builder = originals.prepare(name, str(tmp_path / 'tfds'), str(files),
                                sha256=digests_of(files, name))
    assert builder.info.splits['train'].num_examples == 30
    # TFDS's own builder read it back: the same name, version and features as its download.
    reference = tfds.builder(name, data_dir=str(tmp_path / 'tfds'))
    assert reference.is_prepared() and reference.version == builder.version
    for split, (images, labels) in made.items():
        examples = read_all(name, str(tmp_path / 'tfds'), split)
        assert len(examples) == len(images)
        for example in examples:  # every image once, with its own label and its exact pixels
            image = example['image']
            assert image.shape == (28, 28, 1) and image.dtype == np.uint8
            i = int(image[0, 0, 0]) - (0 if split == 'train' else 30)
            np.testing.assert_array_equal(image[..., 0], images[i])
            assert example['label'] == labels[i]
        assert sorted(int(e['image'][0, 0, 0]) for e in examples) == sorted(images[:, 0, 0])


def test_cifar10_binary_archive_becomes_tfds_own_dataset(tmp_path):
    rng = np.random.default_rng(1)
    pixels = {f: rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
              for f in [f'data_batch_{i}.bin' for i in range(1, 6)] + ['test_batch.bin']}
    labels = {f: rng.integers(0, 10, 4).astype(np.uint8) for f in pixels}
    names = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
             'truck']
    archive = tmp_path / 'cifar-10-binary.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        members = {f: np.concatenate([labels[f][:, None], pixels[f].reshape(4, -1)], 1).tobytes()
                   for f in pixels}
        members['batches.meta.txt'] = ('\n'.join(names) + '\n').encode()
        for f, blob in members.items():
            info = tarfile.TarInfo(f'cifar-10-batches-bin/{f}')
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    builder = originals.prepare('cifar10', str(tmp_path / 'tfds'), str(tmp_path),
                                sha256={archive.name: (originals.file_sha256(archive),)})
    assert builder.info.features['label'].names == names
    examples = read_all('cifar10', str(tmp_path / 'tfds'), 'train')
    assert len(examples) == 20
    by_id = {e['id'].decode() if isinstance(e['id'], bytes) else e['id']: e for e in examples}
    second = by_id['train_00005']  # the second record of data_batch_2.bin
    np.testing.assert_array_equal(second['image'],
                                  pixels['data_batch_2.bin'][1].transpose(1, 2, 0))
    assert second['label'] == labels['data_batch_2.bin'][1]


def test_files_that_are_not_the_originals_are_refused(tmp_path):
    files = tmp_path / 'files'
    files.mkdir()
    write_idx_set(files, 10, 10)
    with pytest.raises(ValueError, match=r'train-images-idx3-ubyte.gz has sha256 [0-9a-f]{64}, '
                                         r'not the original'):
        originals.prepare('mnist', str(tmp_path / 'tfds'), str(files))  # the known digests
    assert not tfds.builder('mnist', data_dir=str(tmp_path / 'tfds')).is_prepared()
    assert not (tmp_path / 'tfds' / 'mnist').exists() or not any(
        (tmp_path / 'tfds' / 'mnist').iterdir())


def test_missing_files_say_where_they_come_from(tmp_path):
    config = common.data('mnist')
    config.data_dir = str(tmp_path / 'tfds')
    with pytest.raises(FileNotFoundError, match=r'mnist is not prepared and its original files '
                                                r'.* are not found: download them from '
                                                r'http://yann.lecun.com/exdb/mnist/, then run '
                                                r'`python -m tools.prepare_data mnist --from DIR '
                                                r'--data_dir .*/tfds`'):
        data.dataset_info(config)


def test_a_damaged_idx_file_is_named(tmp_path):
    files = tmp_path / 'files'
    files.mkdir()
    write_idx_set(files, 10, 10)
    with gzip.open(files / 't10k-labels-idx1-ubyte.gz', 'wb') as f:
        f.write(b'\x00\x00\x08\x03' + bytes(20))  # an images header on the labels file
    with pytest.raises(ValueError, match=r't10k-labels-idx1-ubyte.gz is not an IDX file of 1 '
                                         r'dimensions'):
        originals.prepare('fashion_mnist', str(tmp_path / 'tfds'), str(files),
                          sha256=digests_of(files, 'fashion_mnist'))


def test_real_fashion_mnist_files_give_70000_images(fashion_mnist_dir):
    config = common.data('fashion_mnist')
    config.data_dir = fashion_mnist_dir
    info = data.dataset_info(config)
    assert info.shape == (28, 28, 1) and info.num_classes == 10 and info.max_value == 255
    assert info.num_examples == {'train': 60_000, 'test': 10_000}
    test = data.load_split(config, 'test')
    assert np.bincount(test['label'], minlength=10).tolist() == [1000] * 10
    # The test images' mean pixel, 0.2868 (Xiao et al.'s files; 0.2860 on the training set).
    assert abs(float(test['image'].mean()) - 0.2868) < 5e-4


def test_the_shipped_classifier_reads_fashion_mnist(fashion_mnist_dir):
    config = common.data('fashion_mnist')
    config.data_dir = fashion_mnist_dir
    test = data.load_split(config, 'test')
    extractor = sample_quality.classifier_extractor('fashion_mnist')
    _, probs = sample_quality.features(extractor, test['image'], 500)
    assert extractor.key == 'fashion_mnist_classifier'
    assert np.mean(probs.argmax(-1) == test['label']) > 0.92  # measured: 0.9226


def test_a_smoke_training_on_fashion_mnist_has_its_sample_metrics(fashion_mnist_dir, tmp_path):
    config = helpers.smoke_config('vae_mnist', fashion_mnist_dir, helpers.VAE,
                                  {'data.name': 'fashion_mnist'})
    result = trainer.train_and_evaluate(config, str(tmp_path / 'w'))
    assert result['step'] == 12 and np.isfinite(result['nll_nats'])
    assert result['feature_extractor'] == 'genmodels_fashion_mnist_classifier_v1'
    assert 0 < result['fid_data_floor'] < result['fid_fashion_mnist_classifier']


@pytest.fixture(scope='session')
def fashion_mnist_dir(tmp_path_factory) -> str:
    fashion_files_or_skip()
    path = str(tmp_path_factory.mktemp('fashion_mnist'))
    originals.prepare('fashion_mnist', path)
    return path
