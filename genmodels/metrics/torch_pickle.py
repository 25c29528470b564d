"""Reads a PyTorch state_dict file (.pth/.pt) into NumPy arrays, without importing torch.

Both of torch.save's formats are read:
  zip (torch >= 1.6): <prefix>/data.pkl holds the pickled object, <prefix>/data/<key> each storage;
  legacy: pickles of a magic number, a protocol version and sys_info, then the object, then the list
  of storage keys, then per key an int64 element count followed by the raw little-endian bytes.
Tensors are pickled as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...), with
storages as persistent ids ('storage', <torch.XStorage>, key, location, numel[, view_metadata]).
Every pickle in the file, the legacy header included, goes through a restricted unpickler: only
those few globals resolve (anything else is an error naming the class, raised before anything is
called), so a file cannot run code on load (as torch.load(weights_only=True)).
"""
import collections
import dataclasses
import io
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: type
    offset: int = 0       # in elements, for legacy storage views
    numel: int | None = None


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused):
    return data


class _PlainUnpickler(pickle.Unpickler):
    """Plain data only (numbers, strings, lists, dicts): the legacy header and storage keys."""
    _GLOBALS: dict = {}

    def find_class(self, module, name):
        if (module, name) in self._GLOBALS:
            return self._GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f'{module}.{name} is not allowed in a state_dict file')

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f'unexpected persistent id {pid!r}')


class _Unpickler(_PlainUnpickler):
    """The state_dict itself: tensors, storages and OrderedDicts."""
    _GLOBALS = {('collections', 'OrderedDict'): collections.OrderedDict,
                ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
                ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
                ('torch._utils', '_rebuild_parameter'): _rebuild_parameter}

    def __init__(self, file):
        super().__init__(file)
        self.storages_seen = []  # legacy files need each storage's dtype to read its bytes

    def find_class(self, module, name):
        if module == 'torch' and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        return super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid[0] in ('storage', b'storage')):
            raise pickle.UnpicklingError(f'unexpected persistent id {pid!r}')
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) > 5 else None
        ref = _StorageRef(str(key), storage_type.dtype, 0, numel)
        if view is not None:  # (view_key, offset, size), only in very old legacy files
            ref = _StorageRef(str(key), storage_type.dtype, view[1], view[2])
        self.storages_seen.append(ref)
        return ref


def _materialise(obj, storages: dict):
    """Replaces every _TensorRef inside obj (dicts, lists, tuples) by a NumPy array."""
    if isinstance(obj, _TensorRef):
        ref = obj.storage
        flat = storages[ref.key].view(ref.dtype)[ref.offset:]
        numel = int(np.prod(obj.size))
        last = obj.offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride)) if numel else 0
        if last >= len(flat) and numel:
            raise ValueError(f'tensor reaches element {last} of a storage of {len(flat)}; corrupt file')
        item = flat.itemsize
        return np.lib.stride_tricks.as_strided(
            flat[obj.offset:], obj.size, [s * item for s in obj.stride]).copy()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v, storages)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, storages) for v in obj)
    return obj


def _load_zip(data: bytes):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        pkl = [n for n in z.namelist() if n.endswith('data.pkl')]
        if len(pkl) != 1:
            raise ValueError(f'expected one data.pkl in the zip, found {pkl}')
        prefix = pkl[0][:-len('data.pkl')]
        if prefix + 'byteorder' in z.namelist() and z.read(prefix + 'byteorder') != b'little':
            raise ValueError('big-endian torch files are not supported')
        obj = _Unpickler(io.BytesIO(z.read(pkl[0]))).load()
        keys = {n[len(prefix) + 5:] for n in z.namelist() if n.startswith(prefix + 'data/')}
        storages = {k: np.frombuffer(z.read(prefix + 'data/' + k), np.uint8) for k in keys}
    return obj, storages


def _load_legacy(data: bytes):
    f = io.BytesIO(data)

    def plain():
        return _PlainUnpickler(f).load()

    if plain() != _LEGACY_MAGIC or plain() != _LEGACY_PROTOCOL:
        raise ValueError('not a torch.save file (bad magic number or protocol version)')
    sys_info = plain()
    if not isinstance(sys_info, dict):
        raise ValueError('not a torch.save file (no sys_info after the protocol version)')
    if not sys_info.get('little_endian', True):
        raise ValueError('big-endian torch files are not supported')
    unpickler = _Unpickler(f)
    obj = unpickler.load()
    dtypes = {r.key: np.dtype(r.dtype) for r in unpickler.storages_seen}
    storages = {}
    for key in plain():
        (numel,) = struct.unpack('<q', f.read(8))
        nbytes = numel * dtypes[str(key)].itemsize
        storages[str(key)] = np.frombuffer(f.read(nbytes), np.uint8)
        if storages[str(key)].size != nbytes:
            raise ValueError('file ends inside a storage; truncated download?')
    return obj, storages


def load_torch_file(path) -> dict:
    """The object saved with torch.save at `path` (normally a state_dict: name -> np.ndarray)."""
    with open(path, 'rb') as f:
        data = f.read()
    try:
        obj, storages = (_load_zip if zipfile.is_zipfile(io.BytesIO(data)) else _load_legacy)(data)
        return _materialise(obj, storages)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, struct.error,
            zipfile.BadZipFile, AttributeError, TypeError, IndexError) as e:
        raise ValueError(f'{path} is not a readable torch state_dict file '
                         f'({type(e).__name__}: {e})') from None
