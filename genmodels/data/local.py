"""The user's own images: `images:<folder>` of PNG/JPEG files, and `arrays:<file>.npz`.

A folder's layout decides its labels and splits:

    folder/train/<class>/*.png, folder/test/<class>/*.png   given splits, class subfolders
    folder/train/*.png, folder/test/*.png                   given splits, no labels
    folder/<class>/*.jpg                                    class subfolders, the fixed split
    folder/*.jpg                                            no labels, the fixed split

Classes are the subfolder names in sorted order (label i is the i-th name); without subfolders
every label is 0. The fixed split (`test_rows`): within each class, in sorted file order, every
10th image goes to `test`, the rest to `train`. Files are PNG or JPEG by extension; other files
are ignored.

`data.image_size` S > 0 scales each image so its shorter side is S (Lanczos) and cuts the centre
S x S; 0 keeps the files' size, which must then be the same for all. `data.image_channels` 1 or 3
converts every image to greyscale or RGB; 0 keeps greyscale if every file is greyscale, else RGB.

The decoded images are cached once, as an .npz in `<data_dir>/genmodels_images/` (TFDS's default
data dir when data.data_dir is None), named by a digest of the folder's listing (each file's
path, size and modification time) and the two settings, so a second run starts at once and a
changed folder is read again.

An .npz holds `x`, uint8 [N, H, W, C] (or [N, H, W] for greyscale), and optionally `y`, integer
labels [N] from 0; its split is the fixed split above. The same two settings apply to it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGES_PREFIX = 'images:'
ARRAYS_PREFIX = 'arrays:'
EXTENSIONS = ('.png', '.jpg', '.jpeg')
SPLITS = ('train', 'test')
TEST_EVERY = 10  # the fixed split: every 10th image of each class goes to `test`
_CACHE_VERSION = 1  # bump when the decoding or the cache's layout changes


def is_local(name: str) -> bool:
    return name.startswith((IMAGES_PREFIX, ARRAYS_PREFIX))


@dataclasses.dataclass(frozen=True)
class LocalData:
    splits: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (uint8 [N, H, W, C], int32 [N])
    class_names: tuple[str, ...]                      # () for unlabelled data

    @property
    def num_classes(self) -> int:
        return max(1, len(self.class_names))


def load(name: str, image_size: int, channels: int, data_dir: str | None) -> LocalData:
    """The dataset `images:<folder>` or `arrays:<file>`, sized as the settings say."""
    check_settings(name, image_size, channels)
    if name.startswith(ARRAYS_PREFIX):
        return _load_arrays(name[len(ARRAYS_PREFIX):], image_size, channels)
    return _load_folder(name[len(IMAGES_PREFIX):], image_size, channels, data_dir)


def check_settings(name: str, image_size: int, channels: int) -> None:
    if image_size < 0:
        raise ValueError(f'data.image_size must be >= 0 (0 keeps the files\' size), got '
                         f'{image_size}.')
    if channels not in (0, 1, 3):
        raise ValueError(f'data.image_channels must be 0 (as the files are), 1 or 3, got '
                         f'{channels}.')


def test_rows(labels: np.ndarray) -> np.ndarray:
    """Whether each example (in its source order) is in the fixed `test` split."""
    rank = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        rank[labels == c] = np.arange(np.sum(labels == c))
    return rank % TEST_EVERY == TEST_EVERY - 1


def _fixed_split(pixels: np.ndarray, labels: np.ndarray
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    test = test_rows(labels)
    return {'train': (pixels[~test], labels[~test]), 'test': (pixels[test], labels[test])}


# ------------------------------------------------------------------------------------------------
# A folder of image files

def _images_in(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(EXTENSIONS)
                  and os.path.isfile(os.path.join(folder, f)))


def _subfolders(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if os.path.isdir(os.path.join(folder, f))
                  and not f.startswith('.'))


def _layout(root: str) -> dict[str, list[tuple[str, str]]]:
    """split (or '' for the fixed split) -> [(relative path, class name or '')], sorted."""
    if not os.path.isdir(root):
        raise ValueError(f'images:{root}: no such folder; give a folder of PNG/JPEG files.')
    subs = _subfolders(root)
    if len(set(SPLITS) & set(subs)) == 1:
        raise ValueError(f'{root} has a {(set(SPLITS) & set(subs)).pop()}/ subfolder but no '
                         f'{(set(SPLITS) - set(subs)).pop()}/; give both splits, or neither (the '
                         f'fixed split then holds out every {TEST_EVERY}th image).')
    groups = {s: os.path.join(root, s) for s in SPLITS} if set(SPLITS) <= set(subs) else {'': root}
    layout = {}
    for split, folder in groups.items():
        classes, loose = _subfolders(folder), _images_in(folder)
        if classes and loose:
            raise ValueError(f'{folder} holds images ({loose[0]}, ...) beside class subfolders '
                             f'({classes[0]}, ...); put every image in a class subfolder, or '
                             f'none.')
        rel = os.path.relpath(folder, root)
        if classes:
            files = [(os.path.normpath(os.path.join(rel, c, f)), c)
                     for c in classes for f in _images_in(os.path.join(folder, c))]
        else:
            files = [(os.path.normpath(os.path.join(rel, f)), '') for f in loose]
        if not files:
            raise ValueError(f'{folder} holds no PNG or JPEG files ({", ".join(EXTENSIONS)}); '
                             f'give a folder of images.')
        layout[split] = files
    return layout


def _listing_digest(root: str, layout: dict, image_size: int, channels: int) -> str:
    digest = hashlib.sha256(json.dumps([_CACHE_VERSION, image_size, channels]).encode())
    for split, files in layout.items():
        for rel, label in files:
            stat = os.stat(os.path.join(root, rel))
            digest.update(json.dumps([split, rel, label, stat.st_size, stat.st_mtime_ns]).encode())
    return digest.hexdigest()[:32]


def _cache_path(data_dir: str | None, digest: str) -> str:
    if data_dir is None:
        import tensorflow_datasets as tfds  # TFDS's default data dir, as the other datasets
        data_dir = str(tfds.core.constants.DATA_DIR)
    return os.path.join(os.path.expanduser(data_dir), 'genmodels_images', f'{digest}.npz')


def _load_folder(root: str, image_size: int, channels: int, data_dir: str | None) -> LocalData:
    layout = _layout(root)
    path = _cache_path(data_dir, _listing_digest(root, layout, image_size, channels))
    if os.path.exists(path):
        return _read_cache(path)
    names = sorted({c for files in layout.values() for _, c in files if c})
    ids = {c: i for i, c in enumerate(names)}
    files = [(s, rel, c) for s, group in layout.items() for rel, c in group]
    paths = [os.path.join(root, rel) for _, rel, _ in files]
    pixels = _decode_all(paths, image_size, channels)
    labels = np.array([ids.get(c, 0) for _, _, c in files], np.int32)
    if '' in layout:
        splits = _fixed_split(pixels, labels)
    else:
        of = np.array([s for s, _, _ in files])
        splits = {s: (pixels[of == s], labels[of == s]) for s in SPLITS}
    result = LocalData(splits, tuple(names))
    _write_cache(path, result)
    return result


_GREY_MODES = ('1', 'L', 'LA', 'I', 'I;16', 'F')


def _open(path: str, header_only: bool = False) -> Image.Image | str:
    """The image at `path`, decoded, or with `header_only` its mode, read from the header alone;
    an unreadable file is an error naming it."""
    try:
        with Image.open(path) as image:
            if header_only:
                return image.mode
            image.load()
            return image.copy()
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ValueError(f'cannot read {path} as an image ({e}); remove or replace it.') from None


def _decode_all(paths: list[str], image_size: int, channels: int) -> np.ndarray:
    """uint8 [N, S, S, C] of the files, decoded, converted and sized as the settings say; one
    image is held decoded at a time."""
    if channels == 0:  # greyscale only if every file is: their headers say, without decoding
        channels = 1 if all(_open(p, header_only=True) in _GREY_MODES for p in paths) else 3
    first, out = None, []
    for path in paths:
        image = _open(path)
        first = first or (path, image.size)
        out.append(_convert(path, image, image_size, channels, first))
    return np.stack(out)


def _convert(path: str, image: Image.Image, size: int, channels: int,
             first: tuple[str, tuple[int, int]] | None = None) -> np.ndarray:
    """One image as uint8 [S, S, C]; with size 0, an error unless it has the size of `first`
    (a path and its width x height)."""
    image = image.convert('L' if channels == 1 else 'RGB')
    if size == 0:
        if first is not None and image.size != first[1]:
            raise ValueError(f'{path} is {image.size[0]}x{image.size[1]} but {first[0]} is '
                             f'{first[1][0]}x{first[1][1]}; set data.image_size to resize them '
                             f'to one size.')
    else:
        image = _resize_crop(image, size)
    array = np.asarray(image, np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _resize_crop(image: Image.Image, size: int) -> Image.Image:
    """Shorter side scaled to `size` (Lanczos), then the centre size x size."""
    w, h = image.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    if new != (w, h):
        image = image.resize(new, Image.LANCZOS)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def _write_cache(path: str, result: LocalData) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {f'{s}_{k}': v for s, (x, y) in result.splits.items() for k, v in (('x', x), ('y', y))}
    tmp = f'{path}.{os.getpid()}.tmp.npz'  # written whole, then renamed: never half a cache
    np.savez(tmp, class_names=np.array(json.dumps(result.class_names)), **arrays)
    os.replace(tmp, path)


@functools.lru_cache(maxsize=2)
def _read_cache(path: str) -> LocalData:
    with np.load(path, allow_pickle=False) as f:
        splits = {s: (f[f'{s}_x'], f[f'{s}_y']) for s in SPLITS}
        return LocalData(splits, tuple(json.loads(str(f['class_names']))))


# ------------------------------------------------------------------------------------------------
# An .npz of arrays

@functools.lru_cache(maxsize=2)
def _load_arrays(path: str, image_size: int, channels: int) -> LocalData:
    where = f'arrays:{path}'
    try:
        with np.load(path, allow_pickle=False) as f:
            if 'x' not in f.files:
                raise ValueError(f'{where} has no array `x` (it holds {", ".join(f.files)}); '
                                 f'save the images as x (uint8, N x H x W x C).')
            x, y = f['x'], (f['y'] if 'y' in f.files else None)
    except (OSError, ValueError) as e:
        if str(e).startswith(where):
            raise
        raise ValueError(f'cannot read {where} as an .npz file ({e}); save it with '
                         f'numpy.savez(path, x=..., y=...).') from None
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise ValueError(f'{where}: x is {x.dtype} {x.shape}; save uint8 pixels 0..255 of shape '
                         f'N x H x W x C (C = 1 or 3), or N x H x W for greyscale.')
    if len(x) == 0:
        raise ValueError(f'{where}: x holds no images.')
    x = x[..., None] if x.ndim == 3 else x
    if y is None:
        y = np.zeros(len(x), np.int32)
        names = ()
    else:
        if (y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0):
            raise ValueError(f'{where}: y is {y.dtype} {y.shape}; save one integer label >= 0 '
                             f'per image ({len(x)}).')
        names = tuple(str(i) for i in range(int(y.max()) + 1))
    if image_size or (channels and channels != x.shape[-1]):
        x = np.stack([_convert(where, Image.fromarray(image[..., 0] if image.shape[-1] == 1
                                                      else image), image_size, channels or
                               x.shape[-1]) for image in x])
    return LocalData(_fixed_split(x, y.astype(np.int32)), names)
