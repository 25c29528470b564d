"""The user's own images (genmodels/data/local.py): image folders with labels and splits, .npz
arrays, the decoded cache, every bad input as a one-line error, and a smoke training on each."""

import os

import numpy as np
import pytest
from PIL import Image

from configs import common
from genmodels import data, trainer
from genmodels.data import local
from tests import helpers


def config_for(name: str, cache: str, **settings):
    config = common.data(name)
    config.data_dir = cache
    for key, value in settings.items():
        config[key] = value
    return config


def save(path, array: np.ndarray, fmt: str = 'png') -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path, format=fmt)


def class_folder(root, per_class: int, shape=(8, 8, 1)) -> dict[str, list[np.ndarray]]:
    """root/<class>/<i>.png, pixel [0, 0] the image's number within its class."""
    rng = np.random.default_rng(0)
    made = {}
    for c in ('cat', 'ant'):  # sorted: ant is label 0, cat label 1
        made[c] = []
        for i in range(per_class):
            image = rng.integers(0, 256, shape, dtype=np.uint8)
            image[0, 0] = i
            save(root / c / f'{i:03d}.png', image)
            made[c].append(image)
    return made


def test_class_subfolders_give_labels_and_the_fixed_split(tmp_path):
    made = class_folder(tmp_path / 'imgs', 25)
    config = config_for(f'images:{tmp_path / "imgs"}', str(tmp_path / 'cache'))
    info = data.dataset_info(config)
    assert info.shape == (8, 8, 1) and info.num_classes == 2 and info.max_value == 255
    assert info.num_examples == {'train': 46, 'test': 4}  # images 9 and 19 of each class
    test = data.load_split(config, 'test')
    np.testing.assert_array_equal(test['label'], [0, 0, 1, 1])
    expected = [made['ant'][9], made['ant'][19], made['cat'][9], made['cat'][19]]
    np.testing.assert_allclose(test['image'], np.stack(expected) / 255.0, atol=1e-6)


def test_train_and_test_subfolders_and_colour_resized_and_cropped(tmp_path):
    root = tmp_path / 'imgs'
    rng = np.random.default_rng(1)
    for split, n in (('train', 6), ('test', 3)):
        for c in ('a', 'b', 'c'):
            for i in range(n):
                save(root / split / c / f'{i}.png', rng.integers(0, 256, (12, 20, 3), np.uint8))
    save(root / 'test' / 'c' / 'photo.jpg', rng.integers(0, 256, (30, 16, 3), np.uint8), 'jpeg')
    (root / 'test' / 'c' / 'notes.txt').write_text('not an image: ignored')
    config = config_for(f'images:{root}', str(tmp_path / 'cache'), image_size=8)
    info = data.dataset_info(config)
    assert info.shape == (8, 8, 3) and info.num_classes == 3
    assert info.num_examples == {'train': 18, 'test': 10}
    # Greyscale on request; a 12 x 20 image scaled to 8 x 13 and its centre 8 x 8 cut.
    grey = config_for(f'images:{root}', str(tmp_path / 'cache'), image_size=8, image_channels=1)
    first = np.asarray(Image.open(root / 'train' / 'a' / '0.png').convert('L').resize(
        (13, 8), Image.LANCZOS))[:, 2:10]
    train = data.load_split(grey, 'train')
    assert train['image'].shape == (18, 8, 8, 1)
    np.testing.assert_allclose(train['image'][0, ..., 0], first / 255.0, atol=1e-6)


def test_a_folder_is_decoded_once_and_read_again_when_it_changes(tmp_path, monkeypatch):
    class_folder(tmp_path / 'imgs', 10)
    name = f'images:{tmp_path / "imgs"}'
    first = local.load(name, 0, 0, str(tmp_path / 'cache'))
    assert len(os.listdir(tmp_path / 'cache' / 'genmodels_images')) == 1
    local._read_cache.cache_clear()

    def no_decoding(*args):
        raise AssertionError('decoded again')

    monkeypatch.setattr(local, '_decode_all', no_decoding)
    again = local.load(name, 0, 0, str(tmp_path / 'cache'))  # from the cache
    for split in local.SPLITS:
        for a, b in zip(first.splits[split], again.splits[split]):
            np.testing.assert_array_equal(a, b)
    save(tmp_path / 'imgs' / 'ant' / 'new.png', np.zeros((8, 8, 1), np.uint8))
    with pytest.raises(AssertionError, match='decoded again'):  # a changed folder: read again
        local.load(name, 0, 0, str(tmp_path / 'cache'))


def test_arrays_with_and_without_labels(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    y = np.arange(40) % 4
    np.savez(tmp_path / 'a.npz', x=x, y=y)
    np.savez(tmp_path / 'b.npz', x=x[..., 0])
    labelled = config_for(f'arrays:{tmp_path / "a.npz"}', None)
    info = data.dataset_info(labelled)
    assert info.shape == (6, 6, 3) and info.num_classes == 4
    assert info.num_examples == {'train': 36, 'test': 4}
    test = data.load_split(labelled, 'test')
    rows = np.flatnonzero(local.test_rows(y))
    np.testing.assert_array_equal(test['label'], y[rows])
    np.testing.assert_allclose(test['image'], x[rows] / 255.0, atol=1e-6)
    plain = data.dataset_info(config_for(f'arrays:{tmp_path / "b.npz"}', None))
    assert plain.shape == (6, 6, 1) and plain.num_classes == 1


def bad_inputs(root) -> list[tuple[str, dict, str]]:
    """(data.name, settings, expected error text) for each bad input; writes the files."""
    save(root / 'corrupt' / 'good.png', np.zeros((8, 8, 1), np.uint8))
    (root / 'corrupt' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(30))
    (root / 'empty').mkdir()
    (root / 'empty' / 'readme.txt').write_text('no images here')
    save(root / 'sizes' / 'a.png', np.zeros((8, 8, 1), np.uint8))
    save(root / 'sizes' / 'b.png', np.zeros((9, 8, 1), np.uint8))
    save(root / 'mixed' / 'loose.png', np.zeros((8, 8, 1), np.uint8))
    save(root / 'mixed' / 'cls' / 'a.png', np.zeros((8, 8, 1), np.uint8))
    save(root / 'half' / 'train' / 'a.png', np.zeros((8, 8, 1), np.uint8))
    np.savez(root / 'float.npz', x=np.zeros((4, 8, 8, 1), np.float32))
    np.savez(root / 'shape.npz', x=np.zeros((4, 8), np.uint8))
    np.savez(root / 'nox.npz', images=np.zeros((4, 8, 8, 1), np.uint8))
    np.savez(root / 'y.npz', x=np.zeros((4, 8, 8, 1), np.uint8), y=np.zeros(3, np.int64))
    (root / 'junk.npz').write_bytes(b'not a zip file')
    return [
        (f'images:{root / "corrupt"}', {}, f'cannot read {root / "corrupt" / "broken.png"} as an '
                                           f'image'),
        (f'images:{root / "empty"}', {}, 'holds no PNG or JPEG files'),
        (f'images:{root / "nowhere"}', {}, 'no such folder'),
        (f'images:{root / "sizes"}', {}, 'set data.image_size'),
        (f'images:{root / "mixed"}', {}, 'beside class subfolders'),
        (f'images:{root / "half"}', {}, 'has a train/ subfolder but no test/'),
        (f'images:{root / "sizes"}', {'image_channels': 2}, 'data.image_channels must be'),
        (f'arrays:{root / "float.npz"}', {}, 'x is float32 (4, 8, 8, 1); save uint8'),
        (f'arrays:{root / "shape.npz"}', {}, 'x is uint8 (4, 8); save uint8'),
        (f'arrays:{root / "nox.npz"}', {}, 'has no array `x`'),
        (f'arrays:{root / "y.npz"}', {}, 'save one integer label >= 0 per image'),
        (f'arrays:{root / "junk.npz"}', {}, 'cannot read arrays:'),
        ('mnist_bundled', {'image_size': 16}, 'are for images:<folder> and arrays:<file> data'),
    ]


def test_bad_inputs_are_one_line_errors_naming_the_file(tmp_path):
    failures = []
    for name, settings, expected in bad_inputs(tmp_path):
        try:
            data.dataset_info(config_for(name, str(tmp_path / 'cache'), **settings))
            failures.append(f'{name} {settings}: no error')
        except ValueError as e:
            if expected not in str(e) or '\n' in str(e):
                failures.append(f'{name} {settings}: {e}')
    assert not failures, '\n'.join(failures)
    assert not os.path.exists(tmp_path / 'cache' / 'genmodels_images') or not [
        f for f in os.listdir(tmp_path / 'cache' / 'genmodels_images') if 'tmp' in f]


@pytest.mark.parametrize('kind', ['images', 'arrays'])
def test_a_smoke_training_on_the_users_images(tmp_path, kind):
    rng = np.random.default_rng(3)
    if kind == 'images':
        class_folder(tmp_path / 'imgs', 40, shape=(10, 10, 1))
        name = f'images:{tmp_path / "imgs"}'
    else:
        np.savez(tmp_path / 'x.npz', x=rng.integers(0, 256, (80, 10, 10, 1), dtype=np.uint8),
                 y=np.arange(80) % 2)
        name = f'arrays:{tmp_path / "x.npz"}'
    config = helpers.smoke_config('vae_mnist', str(tmp_path / 'cache'), helpers.VAE,
                                  {'data.name': name, 'data.image_size': 8})
    result = trainer.train_and_evaluate(config, str(tmp_path / 'w'))
    assert result['step'] == 12 and np.isfinite(result['nll_nats'])
    assert result['sample_metrics_note'].startswith('sample metrics skipped')
