"""The flax InceptionV3 (random weights: shapes), its weight conversion and the torch-free reader.

The numerical match with pytorch-fid needs torch and lives in tools/compare_inception_pytorch.py.
"""
import base64
import hashlib
import zlib

import numpy as np
import pytest
from flax import traverse_util

from genmodels.metrics import inception, inception_weights, torch_pickle

# pytorch-fid 0.3.0's FID Inception state_dict, measured with torch: 472 tensors (+ 94 BatchNorm
# num_batches_tracked counters) holding 23,885,392 numbers; a few of its entries and shapes.
TORCH_NUM_TENSORS, TORCH_NUM_VALUES = 472, 23_885_392
TORCH_ENTRIES = {'Conv2d_1a_3x3.conv.weight': (32, 3, 3, 3),
                 'Mixed_5b.branch_pool.bn.running_var': (32,),
                 'Mixed_6e.branch7x7dbl_5.conv.weight': (192, 192, 1, 7),
                 'Mixed_7c.branch3x3dbl_3b.conv.weight': (384, 384, 3, 1),
                 'fc.weight': (1008, 2048), 'fc.bias': (1008,)}

# torch 2.13 wrote these (zlib-compressed, base64) with torch.save(sd) and
# torch.save(sd, _use_new_zipfile_serialization=False), where
#   base = torch.arange(12.).reshape(3, 4); sd = OrderedDict(
#     [('a.weight', base.t()), ('a.bias', base[1]),
#      ('b.running_var', torch.tensor([0.5, 2.0], dtype=float64)),
#      ('b.num_batches_tracked', torch.tensor(7)), ('c', torch.tensor([1.5, -2.25], dtype=bfloat16)),
#      ('d', nn.Parameter(torch.ones(2, 2)))])
TORCH_ZIP_FILE = (
    'eNqlVc9v21Qcf0lcJzgNZGtXtgJbYYOlbEvtOL8qYOm8yRcj0WUCRQjJOI4XW3PjfJ2XDiYhVUItcIXLTogjHDhz7Z3T'
    'QNoJoSEOwIl/gfee3cROmgV1T/nGcfT9/Hh+3+/X21qKQyiTQVNrEa2gB05/o2Ngo9i/56rKafTh1NpLmqbnupaJHa83'
    'EN7zO5ZvdW45JhYArTchUWhRbqN433K6NoakiT3ftIv6EDvuQNB9qz103I6Ord7A8/XdkgCpQqGVJpgByTS6FnABRFBd'
    'z8B3gj8FWGglSI4IfCtFrmZ/CGltEUPmtoY0TksdwHNaQuMOQPjKpj6yGBabkGvxzEzbMQbwvE2UbM5esHmbYV+4TZDc'
    'PuS1xD6cCnCnMSw1YbmVI7h20R/2ek6vq+8aPpwJ4KG5W96w7VojdyvMnQQvEuYkhrPUVXIfzlHm1YD5JQwvN+GV1hnG'
    '3Bvu6G0Dm7Y10LFvmPesDpyPKbzr9boj/guMvwRrhD+B4VXCv74e8L6G4WITLrEEE16PcSjsGUrVEc8bLE2Gy4HPQuhz'
    'nfp8M+C7guFqE66xxA4UZ5xf3/CNHQtbvgAbR8+VQcogEm4Og8S4teQBlMglcQBywF/GUGlC9Ut2U/sC6k3YHBa3tXRm'
    '+OMfV1pJhGhsz6zTJXSZ1WnxrufvGFjftfwBqUVVuXhMuU4tiQr99O9vn1OvNGYLraC3AqGwMHXDdbq9HauHVaX2f7SO'
    'W9UyNdC4D/+QTaLkUw3k0E1moP0ptjzaaKrSOKnu0XIdjF2Leth/589ztDv4p3oQkDKaChuiqlx/RgMB616DfG2RD4k9'
    'Et+ROCTxhAS6gVCexBoJ8QZ1+slnd6+LtPnnOD07diqpyjKarf+kEYK2WDlkch/lyU1+Dn99zF9SlfKJnkQ6ZKO6/cd/'
    'eVQoM0d3a6wrq8rbz3QCh438IdX+4ObDH4gg4uZoc2Ptsqocnd04GNey/ff855dFNcY16lf5JBuRBar46Nvu+/P7ZxVV'
    'gwZm9geW75AOfmDQN5fudFSldAIDolipSJuiVK/IJVGubIq1ek0Sy1JVrlZFSa5XSqVafbNeoy5//l3+tUB8FJjLBDU7'
    '8hmddYtTzqPv4UlkdHgtxVDfJ9Fxk3GSIDp8VmIEp1JoxsSb5IgOj1yM4+uQYzS0JqHRbhbiA5dDkVkzte9Il8Zxh1Gc'
    'NImLdlkct7YQwZUmcdEOieMeRnHyFC7SDXHcMh/BlSdx0ZrOxnAfh7gZ5xkts9UY8JcQeHwDbGs8fzXMPJ+6FmnU+PWb'
    'ZHhw6aPRxbNf2XB3wVt0gQ8wWZYf5P4Hs9s3/w==')
TORCH_LEGACY_FILE = (
    'eNp1k8ly00AQhrU5DsIJZgkQVrPbLMaWjRcuTqhULmKLuOhCqWRpyhIokns0MgVVqfLFJvAMHDjyGH6UXHkEqjjQkoyD'
    'E6NSz6ae/+ueHg2Fr7L3+9v2r8K7H6/Xy0PhxU8R2z3ginqe47g+DVhgBZ4xIDR0Ax94dNBX8IvnMuYRg/i2a/og7Osy'
    'LrKPfWKE7icSgrgHUlHP4GLoBJRBRhV0EWeuz2BJlXQp1gj8HmRVKYqQaSHGIxZDSii/ojahxN5yLSYDV9KAL+rLuMMs'
    'fyBuz2EgWCygllM2IuZ6oWxQ0o1czzYY8cOAGgNFBrFY1LMxHz3NHgEp3SJve4HJ3qSLMmT0VfRp11r1ZrVVr7cbrVYF'
    'lpJQrX6E0eVeMljeUTlVUsUxnFB5VRqD/MWJozrJIKfBir6UhNZ1zRBWHeQ6krNQ95ST6uV3UE0awWmVH8GZVOssg3Ma'
    'rCWH2y3TyPddv2cMTArnU8lp+FtB1PXILP4LhxylWWnVq42aAheRIyBnPY5bGMGlmHM55VxhcFWDa/pawvGjXaNrMssh'
    'ocGoab0nNlyf4z3HIs1ohSM0RWkqcANpPNJuIq1USim3GNzW4I7Ox+cId+cUnyUVqDZmqveOqrarChSnOZSmOdyPc3iQ'
    'qj9k8EiDcqJuw+P/3IW+Sc1dwgiVoXK8KgmpVq3UoYokCUlKQlKFMdSw48dQT2lPGDQ0aO4nk9ZnaGvwNL6xb+O/ZEGV'
    '+UUlERadnLgocWlRjBlSznH/PsMONhv4og3RvqNN0A7QuE2Oy6MV0Cqbwty+g850sMFPB9lp/9dv0slPpDnOof0BD00J'
    'Qw==')


@pytest.fixture(scope='module')
def variables():
    return inception_weights.random_variables(seed=0)


def to_torch_layout(variables):
    """The inverse of the converter, written independently: flax variables -> torch state_dict."""
    names = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
             'var': 'running_var'}
    out = {}
    for (_, *modules, leaf), value in traverse_util.flatten_dict(variables).items():
        value = np.asarray(value)
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        out['.'.join(modules + [names[leaf]])] = value.T if value.ndim == 2 else value
    return out


@pytest.mark.parametrize('shape', [(2, 28, 28, 1), (2, 32, 32, 3)])
def test_forward_shapes_with_random_weights(variables, shape):
    images = np.random.default_rng(0).random(shape, dtype=np.float32)
    out = inception.inception_outputs(variables, images)
    assert out.pool3.shape == (2, 2048) and out.logits.shape == (2, 1008)
    assert np.all(np.isfinite(out.pool3)) and np.all(out.pool3 >= 0)  # mean of ReLU outputs
    fc = variables['params']['fc']
    np.testing.assert_allclose(out.logits, out.pool3 @ np.asarray(fc['kernel']) + np.asarray(fc['bias']),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.logits_unbiased, out.logits - np.asarray(fc['bias']), atol=1e-4)


def torch_bilinear(x, out_size):
    """F.interpolate(mode='bilinear', align_corners=False) on [H, W, C], from its definition:
    source = (dst + 0.5) in/out - 0.5, clamped at 0, linear between the two neighbours."""
    for axis in (0, 1):
        n = x.shape[axis]
        src = np.maximum((np.arange(out_size) + 0.5) * n / out_size - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1, lam = np.minimum(i0 + 1, n - 1), src - i0
        shape = [1, 1, 1]
        shape[axis] = out_size
        x = np.take(x, i0, axis) * (1 - lam).reshape(shape) + np.take(x, i1, axis) * lam.reshape(shape)
    return x


@pytest.mark.parametrize('shape', [(1, 7, 11, 3), (1, 400, 310, 1)])
def test_preprocess_matches_torch_bilinear_resize(shape):
    images = np.random.default_rng(1).random(shape)
    want = 2 * torch_bilinear(np.repeat(images[0], 3 // shape[-1], axis=-1), 299) - 1
    # atol: both torch and jax place samples in float32, ~1e-7 H pixels off, on noise images
    np.testing.assert_allclose(inception.preprocess(images)[0], want, atol=1e-4)


def test_converter_covers_every_tensor(variables):
    state_dict = to_torch_layout(variables)
    assert len(state_dict) == TORCH_NUM_TENSORS
    assert sum(v.size for v in state_dict.values()) == TORCH_NUM_VALUES
    assert {k: state_dict[k].shape for k in TORCH_ENTRIES} == TORCH_ENTRIES
    state_dict['Mixed_5b.branch1x1.bn.num_batches_tracked'] = np.array(3)  # ignored
    converted = inception_weights.state_dict_to_variables(state_dict)
    want, got = traverse_util.flatten_dict(variables), traverse_util.flatten_dict(converted)
    assert want.keys() == got.keys()
    assert all(np.array_equal(want[k], got[k]) for k in want)


def test_converter_rejects_leftover_missing_and_misshapen_tensors(variables):
    state_dict = to_torch_layout(variables)
    with pytest.raises(ValueError, match='no place'):
        inception_weights.state_dict_to_variables(
            {**state_dict, 'AuxLogits.fc.weight': np.zeros((3, 3))})
    with pytest.raises(ValueError, match='lacks 1 of the'):
        inception_weights.state_dict_to_variables(
            {k: v for k, v in state_dict.items() if k != 'Mixed_6a.branch3x3.bn.running_mean'})
    with pytest.raises(ValueError, match='shape'):
        inception_weights.state_dict_to_variables({**state_dict, 'fc.bias': np.zeros(1000)})


def test_wrong_sha256_gives_a_clear_error(tmp_path):
    path = tmp_path / inception_weights.PT_INCEPTION_FILE
    path.write_bytes(b'not the weights')
    digest = hashlib.sha256(b'not the weights').hexdigest()
    expected = inception_weights.PT_INCEPTION_SHA256
    with pytest.raises(ValueError, match=f'sha256 {digest}, expected {expected}'):
        inception_weights.load_inception_variables(path)


@pytest.mark.parametrize('blob', [TORCH_ZIP_FILE, TORCH_LEGACY_FILE], ids=['zip', 'legacy'])
def test_torch_reader_on_files_written_by_torch(tmp_path, blob):
    path = tmp_path / 'sd.pth'
    path.write_bytes(zlib.decompress(base64.b64decode(blob)))
    sd = torch_pickle.load_torch_file(path)
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert list(sd) == ['a.weight', 'a.bias', 'b.running_var', 'b.num_batches_tracked', 'c', 'd']
    np.testing.assert_array_equal(sd['a.weight'], base.T)  # a strided view, not a copy of memory
    np.testing.assert_array_equal(sd['a.bias'], base[1])    # a view at an offset
    assert sd['b.running_var'].dtype == np.float64 and sd['b.num_batches_tracked'] == 7
    assert sd['c'].astype(np.float32).tolist() == [1.5, -2.25]
    np.testing.assert_array_equal(sd['d'], np.ones((2, 2), np.float32))


class _Payload:
    """Pickles as a call of os.system: loading it with plain pickle creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return os.system, (f'touch {self.marker}',)


def _evil_files(tmp_path):
    """A crafted file in every place the reader unpickles: the first pickle of a legacy file, the
    object after a valid legacy header, its storage-key list, and a zip file's data.pkl."""
    import io
    import pickle
    import zipfile
    marker = tmp_path / 'ran'
    evil = pickle.dumps(_Payload(marker), protocol=2)
    header = b''.join(pickle.dumps(x, protocol=2) for x in (
        torch_pickle._LEGACY_MAGIC, torch_pickle._LEGACY_PROTOCOL, {'little_endian': True}))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as z:
        z.writestr('archive/data.pkl', evil)
    return marker, {'legacy_header': evil, 'legacy_object': header + evil,
                    'legacy_keys': header + pickle.dumps({}, protocol=2) + evil,
                    'zip': buf.getvalue()}


@pytest.mark.parametrize('where', ['legacy_header', 'legacy_object', 'legacy_keys', 'zip'])
def test_torch_reader_refuses_code_in_the_file_without_running_it(tmp_path, where):
    marker, files = _evil_files(tmp_path)
    path = tmp_path / 'evil.pth'
    path.write_bytes(files[where])
    with pytest.raises(ValueError, match=r'not a readable torch state_dict .*(posix|os)\.system '
                                         r'is not allowed'):
        torch_pickle.load_torch_file(path)
    assert not marker.exists()
    import pickle
    pickle.loads(files['legacy_header'])  # the payload is live: plain pickle runs it
    assert marker.exists()
