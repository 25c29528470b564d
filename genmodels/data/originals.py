"""Full-size image datasets prepared offline from their original files, as TFDS's own datasets.

TFDS prepares `mnist`, `fashion_mnist` and `cifar10` by downloading their original archives. Here
the same archives come from a folder on this machine instead, are checked by sha256, and are
written through TFDS's own builders (the same name, version, features, keys and split order) as
ArrayRecord, which `tfds.data_source` reads without TensorFlow. Only the image encoding differs:
TFDS's PNG encoder needs TensorFlow, so Pillow encodes the PNGs (lossless: the same pixels).

| dataset         | files (sha256 checked)                          | where they come from            |
|-----------------|-------------------------------------------------|---------------------------------|
| `fashion_mnist` | train-images-idx3-ubyte.gz, train-labels-idx1-  | Debian package                  |
|                 | ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-      | `dataset-fashion-mnist` (found  |
|                 | labels-idx1-ubyte.gz                            | in /usr/share/datasets/fashion- |
|                 |                                                 | mnist/), or github.com/         |
|                 |                                                 | zalandoresearch/fashion-mnist   |
| `mnist`         | the same four names                             | yann.lecun.com/exdb/mnist/ (or  |
|                 |                                                 | TFDS's mirror, storage.         |
|                 |                                                 | googleapis.com/cvdf-datasets/)  |
| `cifar10`       | cifar-10-binary.tar.gz                          | www.cs.toronto.edu/~kriz/       |

A dataset is prepared the first time it is read when its files are in a folder of `SEARCHED`
(Debian's), and otherwise by `python -m tools.prepare_data NAME --from DIR [--data_dir D]`. The
accepted digests are the ones TFDS registers for the original downloads, plus Debian's copies of
Fashion-MNIST's (the same images and labels, compressed with other gzip headers).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.image_classification import cifar, mnist

from genmodels.data import bundled

_IDX_FILES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
              't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')


@dataclasses.dataclass(frozen=True)
class Originals:
    sha256: Mapping[str, tuple[str, ...]]  # file name -> accepted digests
    source: str                            # where the files come from, for messages
    searched: tuple[str, ...] = ()         # folders looked in when the user names none


ORIGINALS: dict[str, Originals] = {
    'fashion_mnist': Originals(
        sha256=dict(zip(_IDX_FILES, (
            ('3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84',   # TFDS
             'b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7'),  # Debian
            ('a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845',
             '0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056'),
            ('346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073',
             'cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa'),
            ('67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5',
             '8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05'),
        ))),
        source=('install the Debian package dataset-fashion-mnist (apt-get install '
                'dataset-fashion-mnist), or download them from '
                'https://github.com/zalandoresearch/fashion-mnist'),
        searched=('/usr/share/datasets/fashion-mnist',)),
    'mnist': Originals(
        sha256=dict(zip(_IDX_FILES, (
            ('440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',),
            ('3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c',),
            ('8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',),
            ('f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',),
        ))),
        source='download them from http://yann.lecun.com/exdb/mnist/'),
    'cifar10': Originals(
        sha256={'cifar-10-binary.tar.gz':
                ('c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd',)},
        source='download it from https://www.cs.toronto.edu/~kriz/cifar.html (the binary version)'),
}


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def find_files(name: str, folder: str | None = None,
               sha256: Mapping[str, tuple[str, ...]] | None = None,
               data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """file name -> path of each original file of `name`, from `folder` (else the first searched
    folder that holds them all), each checked against `sha256` (default: the known digests)."""
    spec = ORIGINALS[name]
    digests = spec.sha256 if sha256 is None else sha256
    folders = (folder,) if folder else spec.searched
    for where in folders:
        paths = {f: os.path.join(where, f) for f in spec.sha256}
        if all(os.path.isfile(p) for p in paths.values()):
            break
    else:
        looked = f' in {" or ".join(folders)}' if folders else ''
        raise FileNotFoundError(
            f'{name} is not prepared and its original files ({", ".join(spec.sha256)}) are not '
            f'found{looked}: {spec.source}, then run `python -m tools.prepare_data {name} '
            f'--from DIR{f" --data_dir {data_dir}" if data_dir else ""}` (DIR: the folder '
            f'holding them).')
    for file, path in paths.items():
        found = file_sha256(path)
        if found not in digests[file]:
            raise ValueError(f'{path} has sha256 {found}, not the original file\'s '
                             f'({" or ".join(digests[file])}); replace it with the original '
                             f'({spec.source}).')
    return paths


def _png(image: np.ndarray) -> bytes:
    """uint8 [H, W, C] -> PNG bytes (Pillow; TFDS's own encoder needs TensorFlow)."""
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format='png')
    return buffer.getvalue()


def read_idx(path: str, ndim: int) -> np.ndarray:
    """The uint8 array of a (gzipped) IDX file of `ndim` dimensions (LeCun's MNIST format: magic
    0x0000_08_<ndim>, then ndim big-endian int32 sizes, then the bytes)."""
    with gzip.open(path, 'rb') as f:
        raw = f.read()
    header = 4 * (1 + ndim)
    if len(raw) < header or int.from_bytes(raw[:4], 'big') != 0x0800 + ndim:
        raise ValueError(f'{path} is not an IDX file of {ndim} dimensions (bad magic number); '
                         f'replace it with the original file.')
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise ValueError(f'{path} holds {len(raw) - header} bytes after its header, expected '
                         f'{int(np.prod(shape))} for shape {shape}; replace it with the original.')
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


class _IdxBuilder:
    """TFDS's MNIST-format builders, reading the four IDX files from `self.originals`."""

    url_infos = None  # nothing is downloaded, so there are no URL checksums to look up
    originals: dict[str, str]  # file name -> path, set before download_and_prepare

    def _split_generators(self, dl_manager):
        del dl_manager  # the files are local
        return {split: self._generate_examples(self.originals[f'{prefix}-images-idx3-ubyte.gz'],
                                               self.originals[f'{prefix}-labels-idx1-ubyte.gz'])
                for split, prefix in (('train', 'train'), ('test', 't10k'))}

    def _generate_examples(self, images_path: str, labels_path: str) -> Iterator[tuple[int, dict]]:
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
        if len(images) != len(labels) or images.shape[1:] != mnist.MNIST_IMAGE_SHAPE[:2]:
            raise ValueError(f'{images_path} holds {images.shape} images and {labels_path} '
                             f'{len(labels)} labels; expected N x 28 x 28 and N.')
        for index, (image, label) in enumerate(zip(images, labels)):  # TFDS's keys: the index
            yield index, {'image': _png(image[..., None]), 'label': int(label)}


class _Mnist(_IdxBuilder, mnist.MNIST, skip_registration=True):
    name = 'mnist'


class _FashionMnist(_IdxBuilder, mnist.FashionMNIST, skip_registration=True):
    name = 'fashion_mnist'


class _Cifar10(cifar.Cifar10, skip_registration=True):
    """TFDS's CIFAR-10 builder reading the binary archive at `self.originals`."""

    name = 'cifar10'
    url_infos = None
    originals: dict[str, str]
    _PREFIX = 'cifar-10-batches-bin/'

    def _split_generators(self, dl_manager):
        del dl_manager
        with tarfile.open(self.originals['cifar-10-binary.tar.gz'], 'r:gz') as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        try:
            names = members[self._PREFIX + 'batches.meta.txt'].decode().split('\n')
            self.info.features['label'].names = [n for n in names if n]
            batches = {split: [members[self._PREFIX + f] for f in files] for split, files in
                       (('train', [f'data_batch_{i}.bin' for i in range(1, 6)]),
                        ('test', ['test_batch.bin']))}
        except KeyError as e:
            raise ValueError(f'{self.originals["cifar-10-binary.tar.gz"]} lacks {e}; replace it '
                             f'with the original cifar-10-binary.tar.gz.') from None
        return {split: self._generate_examples(f'{split}_', blobs)
                for split, blobs in batches.items()}

    def _generate_examples(self, split_prefix: str, blobs: list[bytes]):
        index = 0
        for blob in blobs:
            # A record: 1 label byte, then 32 x 32 x 3 pixels channel-first.
            records = np.frombuffer(blob, np.uint8).reshape(-1, 1 + 32 * 32 * 3)
            for record in records:
                image = record[1:].reshape(3, 32, 32).transpose(1, 2, 0)
                yield index, {'id': f'{split_prefix}{index:05d}', 'image': _png(image),
                              'label': int(record[0])}
                index += 1


_BUILDERS = {'mnist': _Mnist, 'fashion_mnist': _FashionMnist, 'cifar10': _Cifar10}


def prepare(name: str, data_dir: str | os.PathLike | None = None, folder: str | None = None,
            sha256: Mapping[str, tuple[str, ...]] | None = None) -> tfds.core.DatasetBuilder:
    """Prepares TFDS's `name` in `data_dir` (TFDS's default if None) from its original files in
    `folder` (else the searched folders), checked against `sha256` (default: the known digests),
    unless it is prepared already. Idempotent and safe to run concurrently (bundled.build_once)."""
    if name not in ORIGINALS:
        raise ValueError(f'{name!r} is not prepared from original files; expected one of '
                         f'{sorted(ORIGINALS)}.')

    def make():
        builder = _BUILDERS[name](data_dir=data_dir, file_format='array_record')
        if not builder.is_prepared():
            builder.originals = find_files(name, folder, sha256, data_dir)
        return builder

    return bundled.build_once(make)
